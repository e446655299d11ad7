"""Fuzzing ``pipeline.cfg``: any text is a configuration or a ConfigError naming the file.

Reading a file and then asking it anything (the well-known settings, and every key of every
section in every type) either gives a value or raises :class:`~lofarexec.errors.ConfigError`
naming the file, in one line: never configparser's own errors, a ValueError or a traceback.
A file written from known keys and values reads back as written.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from tests.fuzz import FUZZ

WELL_KNOWN = ["runtime_directory", "working_directory", "recipe_directories", "job_directory",
              "log_file", "engine_ppath", "engine_lpath", "remote_method", "max_per_node",
              "max_jobs", "job_timeout", "max_per_node_overrides"]
TYPED = ["get", "get_int", "get_float", "get_bool", "get_list", "get_path"]


def write(tmp_path_factory: Any, text: str | bytes) -> Path:
    path: Path = tmp_path_factory.getbasetemp() / "pipeline.cfg"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def check_error(error: ConfigError, path: Path) -> None:
    assert error.filename == str(path), error
    assert str(error).startswith(str(path)), error
    assert "\n" not in str(error), "one line"


def read_everything(path: Path) -> None:
    """Load ``path`` and ask it everything; only values or our error may come out."""
    try:
        config = load_config(path, job_name="fuzz", start_time="2026-01-01T00:00:00")
    except ConfigError as exc:
        check_error(exc, path)
        return
    questions = [lambda name=name: getattr(config, name) for name in WELL_KNOWN]
    for section in ["DEFAULT", *config.sections()]:
        for key in config.section_keys(section) or ["job_name"]:
            questions += [lambda s=section, k=key, t=typed: getattr(config, t)(s, k)
                          for typed in TYPED]
    for ask in questions:
        try:
            ask()
        except ConfigError as exc:
            check_error(exc, path)


# -- strategies --------------------------------------------------------------------------------
CONFIG_PIECES = ["[DEFAULT]", "[remote]", "[layout]", "[logging]", "[max_per_node]", "[", "]",
                 "\n", " ", "=", ":", "method", "max_per_node", "job_timeout", "runtime_directory",
                 "job_directory", "%(", ")s", "%", "%%", "%(runtime_directory)s", "%(job_name)s",
                 "%(a)s", "${x}", "#", ";", "\t", "local", "-1", "1e999", "nan", "0", "9" * 400,
                 "[a, b", "'", '"', "~", "\x00", "\r", "\u2028", "yes", "host1", "a = %(b)s\n",
                 "b = %(a)s\n"]
config_like = st.lists(st.sampled_from(CONFIG_PIECES) | st.text(max_size=3), max_size=30).map(
    "".join)


@st.composite
def structured(draw: st.DrawFn) -> str:
    """A file of sections and ``key = value`` lines whose values are mostly odd."""
    lines = []
    for section in draw(st.lists(st.sampled_from(["DEFAULT", "remote", "layout", "logging",
                                                  "deploy", "max_per_node", "local", "ssh"]),
                                 min_size=1, max_size=4, unique=True)):
        lines.append(f"[{section}]")
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from(["method", "max_per_node", "max_jobs", "job_timeout",
                                        "runtime_directory", "job_directory", "log_file",
                                        "engine_ppath", "host1", "a", "b"]))
            value = draw(st.sampled_from(CONFIG_PIECES[5:]) | st.text(max_size=6))
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


keys = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=8)
values = st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=12).map(
    str.strip).filter(lambda value: not value.startswith(("#", ";", "[")))


# -- the tests ---------------------------------------------------------------------------------
@FUZZ
@given(config_like | structured() | st.text(max_size=40))
@example(text="[DEFAULT]\nruntime_directory = ~nosuchuser0/x\n")  # was a RuntimeError
@example(text="[DEFAULT]\nrecipe_directories = [~nosuchuser0]\n")
def test_any_text_is_a_configuration_or_our_error(tmp_path_factory, text):
    read_everything(write(tmp_path_factory, text))


@FUZZ
@given(st.binary(max_size=40))
def test_any_bytes_are_a_configuration_or_our_error(tmp_path_factory, raw):
    read_everything(write(tmp_path_factory, raw))


@FUZZ
@given(st.dictionaries(keys, values, max_size=5),
       st.dictionaries(st.from_regex(r"[a-z][a-z0-9.-]{0,8}", fullmatch=True),
                       st.integers(1, 10**6), max_size=4))
def test_keys_and_values_read_back_as_written(tmp_path_factory, defaults, limits):
    defaults = {key: value for key, value in defaults.items()
                if key not in ("job_name", "start_time", "cwd", "config_directory")}
    text = "[DEFAULT]\n" + "".join(f"{key} = {value.replace('%', '%%')}\n"
                                   for key, value in defaults.items())
    text += "[max_per_node]\n" + "".join(f"{host} = {limit}\n" for host, limit in limits.items())
    path = write(tmp_path_factory, text)
    config = load_config(path, job_name="fuzz", start_time="now")
    assert {key: config.get("DEFAULT", key) for key in defaults} == defaults
    assert config.max_per_node_overrides == limits
    assert config.get("DEFAULT", "job_name") == "fuzz"

"""Tests of lofarexec.config.pipeline: interpolation and typed reading of pipeline.cfg."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig, load_config
from lofarexec.errors import ConfigError
from tests.config.support import EXAMPLE, check_error, load, write

# ------------------------------------------------------------------------ loading, interpolation


def test_example_of_the_original_framework(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE.format(root=tmp_path))
    runtime = tmp_path / "pipeline_runtime"
    assert config.path == tmp_path / "pipeline.cfg"
    assert config.runtime_directory == runtime
    assert config.working_directory == tmp_path / "scratch"
    assert config.recipe_directories == [runtime / "recipes"]
    assert config.job_directory == runtime / "jobs" / "job1"
    assert config.get("layout", "log_directory") == f"{runtime}/jobs/job1/logs/2010-10-28T14:14:18"
    assert config.log_file == runtime / "jobs/job1/logs/2010-10-28T14:14:18/pipeline.log"
    assert config.engine_ppath == [
        "/opt/pipeline/lib/python/site-packages",
        "/opt/lofar/lib/python/site-packages",
    ]
    assert config.engine_lpath == ["/opt/pipeline/lib", "/opt/lofar/lib"]
    assert config.remote_method == "local"
    assert config.max_per_node == 1
    assert config.sections() == ["layout", "deploy", "logging", "remote"]
    assert config.has_section("remote") and not config.has_section("DEFAULT")


def test_cwd_and_config_directory_are_interpolated_everywhere(tmp_path: Path) -> None:
    text = """\
        [DEFAULT]
        runtime_directory = %(config_directory)s/runtime
        [mine]
        here = %(cwd)s/x
        name = %(job_name)s@%(start_time)s
        """
    config = load(tmp_path, text, cwd="/some/where")
    assert config.runtime_directory == tmp_path / "runtime"
    assert config.get("mine", "here") == "/some/where/x"
    assert config.get("mine", "name") == "job1@2010-10-28T14:14:18"
    assert config.working_directory == Path("/some/where")


def test_cwd_defaults_to_the_process_working_directory(tmp_path: Path) -> None:
    config = load(tmp_path, "[DEFAULT]\nhere = %(cwd)s\n")
    assert config.get("DEFAULT", "here") == os.getcwd()


def test_file_values_beat_the_run_values(tmp_path: Path) -> None:
    config = load(tmp_path, "[DEFAULT]\njob_name = fixed\nrun = %(job_name)s\n")
    assert config.get("DEFAULT", "run") == "fixed"


def test_run_values_with_percent_signs_are_literal(tmp_path: Path) -> None:
    config = load(tmp_path, "[a]\nname = %(job_name)s\n", job_name="100%done")
    assert config.get("a", "name") == "100%done"


def test_cross_section_reference_through_default(tmp_path: Path) -> None:
    text = "[DEFAULT]\nruntime_directory = /rt\n[remote]\nscratch = %(runtime_directory)s/tmp\n"
    assert load(tmp_path, text).get("remote", "scratch") == "/rt/tmp"


def test_overrides_apply_last_and_interpolate(tmp_path: Path) -> None:
    text = "[DEFAULT]\nruntime_directory = /rt\n[remote]\nmethod = ssh\n"
    overrides = {"remote": {"method": "Local"}, "new": {"where": "%(runtime_directory)s/x"}}
    config = load(tmp_path, text, overrides=overrides)
    assert config.remote_method == "local"
    assert config.get("new", "where") == "/rt/x"
    assert config.section_keys("new") == ["where"]


def test_set_runtime_directory_is_seen_by_dependent_values(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE.format(root=tmp_path))
    config.set("DEFAULT", "runtime_directory", "/elsewhere")
    assert config.job_directory == Path("/elsewhere/jobs/job1")
    config.set("DEFAULT", "runtime_directory", "/100%/x", literal=True)
    assert config.runtime_directory == Path("/100%/x")


def test_set_with_a_stray_percent_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[DEFAULT]\n")
    config = load_config(path, job_name="j", start_time="t")
    with pytest.raises(ConfigError) as excinfo:
        config.set("remote", "method", "50%")
    check_error(excinfo, path, "remote", "method", "'50%'", "%%")


def test_raw_get_skips_interpolation(tmp_path: Path) -> None:
    config = load(tmp_path, "[logging]\nformat = %(asctime)s %(levelname)-7s %(message)s\n")
    assert config.get("logging", "format", raw=True) == "%(asctime)s %(levelname)-7s %(message)s"


# ---------------------------------------------------------------------------- interpolation errors


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[remote]\nx = %(nowhere)s/y\n", ("%(nowhere)s", "[DEFAULT]")),
        ("[remote]\nx = 100%\n", ("'100%'", "%%")),
        ("[remote]\nx = %(x)s\n", ("nest too deeply",)),
        ("[DEFAULT]\nbase = %(nowhere)s\n[remote]\nx = %(base)s/y\n", ("%(nowhere)s",)),
    ],
    ids=["missing-reference", "syntax", "self-reference", "missing-via-default"],
)
def test_interpolation_errors_name_section_and_key(
    tmp_path: Path, text: str, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, text)
    config = load_config(path, job_name="j", start_time="t")  # errors come on access
    for access in (config.get, config.get_list, config.get_path):
        with pytest.raises(ConfigError) as excinfo:
            access("remote", "x")
        check_error(excinfo, path, "remote", "x", *fragments)


def test_missing_reference_in_a_property(tmp_path: Path) -> None:
    path = write(tmp_path, "[layout]\njob_directory = %(runtime_dir)s/jobs\n")
    config = load_config(path, job_name="j", start_time="t")
    with pytest.raises(ConfigError) as excinfo:
        _ = config.job_directory
    check_error(excinfo, path, "layout", "job_directory", "%(runtime_dir)s")


# ---------------------------------------------------------------------------- lists


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[a, b, c]", ["a", "b", "c"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("[ 'a' , \"b c\" ]", ["a", "b c"]),
        ("[/x/recipes]", ["/x/recipes"]),
        ("[a, b,]", ["a", "b"]),
        ("[]", []),
        ("", []),
        ("[\n  a,\n  b\n  ]", ["a", "b"]),
        ("\n  a\n  b", ["a", "b"]),
        ("__import__('os').system('false')", ["__import__('os').system('false')"]),
    ],
)
def test_list_syntax(tmp_path: Path, value: str, expected: list[str]) -> None:
    path = tmp_path / "pipeline.cfg"
    path.write_text(f"[s]\nitems = {value}\n")
    assert load_config(path, job_name="j", start_time="t").get_list("s", "items") == expected


@pytest.mark.parametrize("value", ["[a, b", "a, b]"])
def test_list_with_unmatched_bracket(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[s]\nitems = {value}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").get_list("s", "items")
    check_error(excinfo, path, "s", "items", "bracket", "[a, b, c]")


# ---------------------------------------------------------------------------- typed accessors


ACCESSORS = """\
[DEFAULT]
inherited = 7
[s]
number = 12
word = twelve
zero = 0
decimal = 2.5
infinite = inf
flag = On
maybe = perhaps
blank =
"""


@pytest.fixture
def accessor_config(tmp_path: Path) -> PipelineConfig:
    return load(tmp_path, ACCESSORS)


def test_typed_values(accessor_config: PipelineConfig) -> None:
    config = accessor_config
    assert config.get_int("s", "number", minimum=12) == 12
    assert config.get_int("s", "inherited") == 7
    assert config.get_float("s", "decimal") == 2.5
    assert config.get_float("s", "number") == 12.0
    assert config.get_bool("s", "flag") is True
    assert config.get_bool("s", "zero") is False
    assert config.get_path("s", "word") == Path("twelve")
    assert config.get("s", "blank") == ""


@pytest.mark.parametrize(
    "word", ["yes", "no", "true", "false", "on", "off", "1", "0", "YES", "False"]
)
def test_bool_words(tmp_path: Path, word: str) -> None:
    config = load(tmp_path, f"[s]\nflag = {word}\n")
    assert config.get_bool("s", "flag") is (word.lower() in {"yes", "true", "on", "1"})


def test_fallbacks_for_absent_keys_and_sections(accessor_config: PipelineConfig) -> None:
    config = accessor_config
    assert config.get("s", "absent", fallback="x") == "x"
    assert config.get_int("nowhere", "absent", fallback=None) is None
    assert config.get_float("s", "absent", fallback=1.5) == 1.5
    assert config.get_bool("s", "absent", fallback=False) is False
    assert config.get_list("s", "absent", fallback=[]) == []
    assert config.get_path("s", "absent", fallback=None) is None


@pytest.mark.parametrize(
    ("call", "key", "fragments"),
    [
        (lambda c: c.get("s", "absent"), "absent", ("is missing", "under [s]")),
        (lambda c: c.get_int("s", "word"), "word", ("'twelve'", "whole number")),
        (lambda c: c.get_int("s", "zero", minimum=1), "zero", ("'0'", "less than 1")),
        (lambda c: c.get_int("s", "word", fallback=3), "word", ("whole number",)),
        (lambda c: c.get_float("s", "word"), "word", ("'twelve'", "not a number")),
        (lambda c: c.get_float("s", "infinite"), "infinite", ("finite",)),
        (lambda c: c.get_float("s", "decimal", minimum=3), "decimal", ("less than 3",)),
        (lambda c: c.get_bool("s", "maybe"), "maybe", ("'perhaps'", "true/false, on/off or 1/0")),
        (lambda c: c.get_path("s", "blank"), "blank", ("is empty",)),
        (lambda c: c.get_list("s", "absent"), "absent", ("is missing",)),
    ],
)
def test_accessor_errors_name_file_section_key(
    accessor_config: PipelineConfig, call: object, key: str, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        call(accessor_config)  # type: ignore[operator]
    check_error(excinfo, accessor_config.path, "s", key, *fragments)


def test_missing_section_is_named(accessor_config: PipelineConfig) -> None:
    with pytest.raises(ConfigError) as excinfo:
        accessor_config.get_int("nowhere", "count")
    check_error(excinfo, accessor_config.path, "nowhere", "count", "section is missing")


# ---------------------------------------------------------------------------- well-known settings


def test_well_known_settings_when_absent(tmp_path: Path) -> None:
    config = load(tmp_path, "[DEFAULT]\nruntime_directory = /rt\n", cwd="/cwd")
    assert config.working_directory == Path("/cwd")
    assert config.recipe_directories == []
    assert config.job_directory == Path("/rt/jobs/job1")
    assert config.log_file is None
    assert config.engine_ppath == [] and config.engine_lpath == []
    assert config.remote_method is None
    assert config.max_per_node is None and config.max_jobs is None
    assert config.job_timeout is None
    assert config.max_per_node_overrides == {}


def test_remote_limits(tmp_path: Path) -> None:
    text = "[remote]\nmethod = SSH\nmax_per_node = 4\nmax_jobs = 100\njob_timeout = 1.5\n"
    config = load(tmp_path, text)
    assert config.remote_method == "ssh"
    assert (config.max_per_node, config.max_jobs, config.job_timeout) == (4, 100, 1.5)


@pytest.mark.parametrize(
    ("text", "name", "section", "key", "fragment"),
    [
        ("[DEFAULT]\n", "runtime_directory", "DEFAULT", "runtime_directory", "is missing"),
        ("[remote]\nmethod =\n", "remote_method", "remote", "method", "is empty"),
        ("[remote]\nmax_per_node = 0\n", "max_per_node", "remote", "max_per_node", "less than 1"),
        ("[remote]\nmax_jobs = many\n", "max_jobs", "remote", "max_jobs", "whole number"),
        ("[remote]\njob_timeout = 0\n", "job_timeout", "remote", "job_timeout", "not positive"),
        ("[max_per_node]\nnode1 = -2\n", "max_per_node_overrides", "max_per_node", "node1", "-2"),
    ],
)
def test_well_known_setting_errors(
    tmp_path: Path, text: str, name: str, section: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    config = load_config(path, job_name="j", start_time="t")
    with pytest.raises(ConfigError) as excinfo:
        getattr(config, name)
    check_error(excinfo, path, section, key, fragment)


def test_max_per_node_overrides_ignore_default_keys(tmp_path: Path) -> None:
    text = """\
        [DEFAULT]
        runtime_directory = /rt
        max_per_node = 2
        [remote]
        [max_per_node]
        Node01 = 3
        node02 = %(max_per_node)s
        """
    config = load(tmp_path, text)
    assert config.max_per_node == 2  # [remote] inherits it from DEFAULT: that is intended
    assert config.max_per_node_overrides == {"node01": 3, "node02": 2}
    assert config.section_keys("max_per_node") == ["node01", "node02"]

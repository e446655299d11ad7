"""Tests of lofarexec.config.settings: a backend's settings dataclass from its section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from tests.config.support import check_error, load, write

# ---------------------------------------------------------------------------- section_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    user: str = "lofar"
    port: int = dataclasses.field(default=22, metadata={"help": "TCP port of the ssh server"})
    timeout: float = 10.0
    compress: bool = False
    key_file: str | None = None
    hosts: list[str] = dataclasses.field(default_factory=list)
    options: tuple[str, ...] = ()


def test_settings_from_an_absent_section_are_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "[DEFAULT]\nport = 2222\nuser = someone\n")
    assert config.section_settings("ssh", Settings) == Settings()


def test_settings_filled_from_own_keys_only(tmp_path: Path) -> None:
    text = """\
        [DEFAULT]
        runtime_directory = /rt
        port = 2222
        [ssh]
        user = %(job_name)s
        timeout = 2.5
        compress = yes
        key-file = %(runtime_directory)s/id
        hosts = [a, b]
        options = x, y
        """
    settings = load(tmp_path, text).section_settings("ssh", Settings)
    assert settings == Settings(
        user="job1",
        port=22,  # DEFAULT's port does not leak into the backend's section
        timeout=2.5,
        compress=True,
        key_file="/rt/id",
        hosts=["a", "b"],
        options=("x", "y"),
    )


def test_settings_empty_optional_value_is_none(tmp_path: Path) -> None:
    config = load(tmp_path, "[ssh]\nkey_file =\nuser =\n")
    assert config.section_settings("ssh", Settings) == Settings(key_file=None, user="")


def test_settings_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[DEFAULT]\nruntime_directory = /rt\n[ssh]\nprot = 22\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("ssh", Settings)
    message = check_error(excinfo, path, "ssh", "prot", "unknown key", "Settings")
    assert "compress, hosts, key_file, options, port, timeout, user" in message


def test_settings_bad_value_names_value_and_type(tmp_path: Path) -> None:
    path = write(tmp_path, "[ssh]\nport = twenty-two\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("ssh", Settings)
    check_error(
        excinfo, path, "ssh", "port", "'twenty-two'", "expected int", "TCP port of the ssh server"
    )


def test_settings_bad_bool_names_type(tmp_path: Path) -> None:
    path = write(tmp_path, "[ssh]\ncompress = maybe\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("ssh", Settings)
    check_error(excinfo, path, "ssh", "compress", "'maybe'", "expected bool")


def test_settings_key_given_twice_with_dash_and_underscore(tmp_path: Path) -> None:
    path = write(tmp_path, "[ssh]\nkey_file = a\nkey-file = b\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("ssh", Settings)
    check_error(excinfo, path, "ssh", "key-file", "twice")


@dataclasses.dataclass
class Required:
    host: str
    port: int = 1

    def __post_init__(self) -> None:
        if self.port > 65535:
            raise ValueError(f"port {self.port} is above 65535;\nuse a real port")


def test_settings_required_field_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "[svc]\nport = 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("svc", Required)
    check_error(excinfo, path, "svc", "host", "is missing")


def test_settings_post_init_error_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[svc]\nhost = h\nport = 70000\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t").section_settings("svc", Required)
    check_error(excinfo, path, "svc", None, "above 65535; use a real port")


def test_settings_unsupported_field_type_is_a_type_error(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Bad:
        mapping: dict[str, str] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="not supported"):
        load(tmp_path, "[DEFAULT]\n").section_settings("bad", Bad)
    with pytest.raises(TypeError, match="not a dataclass"):
        load(tmp_path, "[DEFAULT]\n").section_settings("bad", int)

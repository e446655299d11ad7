"""The paramiko backend's settings and how a host's target is resolved (no sshd needed)."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import ParamikoSettings
from lofarexec_paramiko.connect import KeyCache, translate
from lofarexec_paramiko.hosts import resolve_target

from lofarexec.config import load_config
from lofarexec.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConnectError,
    HostKeyError,
)


# -- settings and config resolution (no sshd) --------------------------------------------------
@pytest.mark.parametrize("bad", [{"host_key_policy": "yes"}, {"sessions": 0}, {"port": 70000},
                                 {"connect_timeout": 0}, {"config_file": "/no/such/config"},
                                 {"key_files": ("/no/such/key",)}, {"user": " "}])
def test_bad_settings_are_value_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ParamikoSettings(**bad)  # type: ignore[arg-type]


def test_ssh_config_mistakes_are_config_errors_naming_file_and_host(tmp_path: Path) -> None:
    config_file = tmp_path / "ssh_config"
    config_file.write_text("Host odd\n  Port twenty-two\n")
    settings = ParamikoSettings(config_file=str(config_file))
    config = paramiko.SSHConfig.from_path(str(config_file))
    with pytest.raises(ConfigError, match=f"^{config_file}: odd: bad Port 'twenty-two'"):
        resolve_target("odd", settings, config)


def test_a_key_file_named_in_the_settings_that_needs_a_passphrase_is_a_config_error(
        tmp_path: Path) -> None:
    locked = tmp_path / "locked_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(locked), password="secret")
    with pytest.raises(ConfigError, match="needs a passphrase"):
        KeyCache().load(str(locked), required=True)


def test_pipeline_cfg_section_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.cfg"
    path.write_text(f"[DEFAULT]\nruntime_directory = {tmp_path}\n[remote]\nmethod = paramiko\n"
                    "[paramiko]\nhost_key_policy = maybe\nkey_files = a, b\n")
    config = load_config(path, job_name="t", start_time="now")
    with pytest.raises(ConfigError, match=r"\[paramiko\].*host_key_policy"):
        config.section_settings("paramiko", ParamikoSettings)


def test_target_follows_ssh_config_and_settings_win(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("")
    config_file = tmp_path / "ssh_config"
    config_file.write_text("Host n1\n  HostName 10.0.0.1\n  Port 2222\n  User alice\n"
                           f"  IdentityFile {tmp_path}/key\n  IdentitiesOnly yes\n"
                           f"  UserKnownHostsFile {tmp_path}/kh {tmp_path}/kh2\n"
                           "  GlobalKnownHostsFile /dev/null\n"
                           "Host jump\n  ProxyJump n1\n")
    config = paramiko.SSHConfig.from_path(str(config_file))
    target = resolve_target("n1", ParamikoSettings(config_file=str(config_file)), config)
    assert (target.hostname, target.port, target.user) == ("10.0.0.1", 2222, "alice")
    assert target.key_files == (f"{tmp_path}/key",) and not target.use_agent
    assert target.user_known_hosts == (f"{tmp_path}/kh", f"{tmp_path}/kh2")
    assert target.global_known_hosts == () and target.known_hosts_name == "[10.0.0.1]:2222"
    mine = ParamikoSettings(config_file=str(config_file), user="bob", port=22,
                            known_hosts_files=(f"{tmp_path}/other",))
    target = resolve_target("n1", mine, config)
    assert (target.user, target.port, target.known_hosts_name) == ("bob", 22, "10.0.0.1")
    assert target.user_known_hosts == (f"{tmp_path}/other",)
    with pytest.raises(Exception, match="jump: .*proxyjump.*method = ssh"):
        resolve_target("jump", ParamikoSettings(config_file=str(config_file)), config)


def test_foreign_errors_are_translated_with_the_host(tmp_path: Path) -> None:
    target = resolve_target("n9", ParamikoSettings(port=2200), paramiko.SSHConfig())
    cases = {ConnectionRefusedError(111, "Connection refused"): ConnectError,
             TimeoutError("timed out"): ConnectError, EOFError(): ConnectError,
             paramiko.SSHException("Error reading SSH protocol banner\nmore"): ConnectError,
             paramiko.AuthenticationException("no"): AuthenticationError,
             paramiko.ChannelException(2, "Connect failed"): BackendError,
             paramiko.BadHostKeyException("n9", paramiko.RSAKey.generate(1024),
                                          paramiko.RSAKey.generate(1024)): HostKeyError}
    for exc, kind in cases.items():
        error = translate(exc, target, "cannot connect to")
        assert type(error) is kind and error.host == "n9"
        assert str(error).startswith("n9: ") and "\n" not in str(error)

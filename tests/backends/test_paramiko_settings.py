"""The paramiko backend's settings and how a host's target is resolved (no sshd needed)."""

from __future__ import annotations

import getpass
import os
import threading
from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import ParamikoBackend, ParamikoSettings
from lofarexec_paramiko.connect import KeyCache, translate
from lofarexec_paramiko.hosts import SSHConfig, load_ssh_config, resolve_target

from lofarexec.backend import LaunchRequest
from lofarexec.config import load_config
from lofarexec.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConnectError,
    HostKeyError,
)
from tests.helpers import Reports


# -- settings and config resolution (no sshd) --------------------------------------------------
@pytest.mark.parametrize("bad", [{"host_key_policy": "yes"}, {"sessions": 0}, {"port": 70000},
                                 {"connect_timeout": 0}, {"config_file": "/no/such/config"},
                                 {"key_files": ("/no/such/key",)}, {"user": " "},
                                 {"preferred_ciphers": ("aes128-gcm", "none")}])
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


# -- resolving many hosts (issue 17) -----------------------------------------------------------
def many_hosts_config(path: Path, count: int) -> Path:
    path.write_text("".join(f"Host h{index}\n  HostName 127.0.0.{index % 250 + 2}\n"
                            f"  Port {2200 + index}\n  IdentityFile ~/.ssh/id_h{index}\n\n"
                            for index in range(count)))
    return path


def test_resolving_many_hosts_asks_for_the_local_user_once_per_backend(
        tmp_path: Path, monkeypatch) -> None:
    """paramiko's lookup asked getpass.getuser() per Host block and per value: N² calls for
    N hosts in a config of N blocks, each reading /etc/passwd where USER is unset."""
    calls = []
    monkeypatch.setattr(getpass, "getuser", lambda: calls.append(1) or "me")
    settings = ParamikoSettings(config_file=str(many_hosts_config(tmp_path / "cfg", 300)))
    config = load_ssh_config(settings)
    targets = [resolve_target(f"h{index}", settings, config, "me") for index in range(300)]
    assert calls == []
    assert [(t.hostname, t.port, t.user) for t in targets[:2]] == [
        ("127.0.0.2", 2200, "me"), ("127.0.0.3", 2201, "me")]
    assert targets[7].key_files == (os.path.expanduser("~/.ssh/id_h7"),)
    tokens = tmp_path / "tokens"
    tokens.write_text("Host t1\n  HostName %h.example.org\n  IdentityFile ~/.ssh/%r_key\n")
    target = resolve_target("t1", settings, load_ssh_config(
        ParamikoSettings(config_file=str(tokens))), "me")  # a token still asks, as paramiko
    assert target.hostname == "t1.example.org"
    assert target.key_files == (os.path.expanduser("~/.ssh/me_key"),)


def test_a_host_is_resolved_by_a_set_up_thread_not_the_scheduler(tmp_path: Path,
                                                                 monkeypatch) -> None:
    config_file = tmp_path / "ssh_config"
    config_file.write_text("Host jump\n  ProxyJump n1\n")
    threads = []
    lookup = SSHConfig.lookup

    def recorded(self: SSHConfig, host: str) -> object:
        threads.append(threading.current_thread())
        return lookup(self, host)

    monkeypatch.setattr(SSHConfig, "lookup", recorded)
    backend = ParamikoBackend(ParamikoSettings(config_file=str(config_file)))
    backend.open()
    try:
        reports = Reports()
        backend.start(LaunchRequest(job_id=1, host="jump", argv=("/bin/true",),
                                    environment={}, token="t"), reports(1))
        outcome = reports.wait(1)
    finally:
        backend.close()
    assert threads and threading.current_thread() not in threads
    assert outcome.returncode is None and outcome.transport_error.startswith(
        f"{config_file}: jump: sets proxyjump"), outcome


def test_the_config_index_answers_as_paramiko_does(tmp_path: Path) -> None:
    """Blocks of plain names are looked up by name; wildcards, negations, Match lines, tokens
    and the order of blocks give what paramiko's own scan gives."""
    path = tmp_path / "mixed"
    path.write_text("Host a b\n  Port 1\nHost *.x !c.x\n  User u\nMatch host q*\n  Port 3\n"
                    "Host a\n  Port 9\n  User z\n  IdentityFile ~/a\nHost c.x\n  HostName %h.y\n"
                    "Host *\n  IdentityFile ~/k\n  User w\n")
    ours = load_ssh_config(ParamikoSettings(config_file=str(path)))
    theirs = paramiko.SSHConfig.from_path(str(path))
    for host in ("a", "b", "c.x", "d.x", "q1", "zz"):
        assert ours.lookup(host) == theirs.lookup(host), host
    assert ours.lookup("a")["identityfile"] == [os.path.expanduser("~/a"),
                                               os.path.expanduser("~/k")]

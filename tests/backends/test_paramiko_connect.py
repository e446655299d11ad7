"""The paramiko backend connecting to a host of the sshd test bed: host keys, the ciphers
offered, and failures to connect or start that are one line naming the host."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import ParamikoSettings
from lofarexec_paramiko.connect import KeyCache, close_transport, connect
from lofarexec_paramiko.hosts import KnownHosts, resolve_target

from lofarexec.backend import Outcome
from lofarexec.errors import AuthenticationError
from tests.backends.paramiko_helpers import known_hosts_file, known_hosts_name, request
from tests.helpers import Reports


# -- host keys ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_unknown_host_key_is_rejected_without_prompt(backends, ssh_testbed, tmp_path) -> None:
    backend = backends(known_hosts_files=(known_hosts_file(tmp_path / "kh"),))
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    outcome = outcomes.wait(1)
    assert outcome.returncode is None
    assert outcome.transport_error.startswith("node1: its key (ssh-ed25519 SHA256:")
    assert "is not in" in outcome.transport_error and "accept-new" in outcome.transport_error
    assert (tmp_path / "kh").read_text() == ""


@pytest.mark.slow
def test_changed_host_key_is_rejected_even_by_accept_new(backends, ssh_testbed, tmp_path) -> None:
    name = known_hosts_name(ssh_testbed, "node1")
    impostor = paramiko.Ed25519Key.from_private_key_file(str(ssh_testbed.identity_file))
    path = known_hosts_file(tmp_path / "kh", f"{name} ssh-ed25519 {impostor.get_base64()}\n")
    backend = backends(known_hosts_files=(path,), host_key_policy="accept-new")
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    assert "differs from the one on record" in outcomes.wait(1).transport_error


@pytest.mark.slow
def test_accept_new_records_the_key_for_the_next_run(backends, ssh_testbed, tmp_path) -> None:
    path = known_hosts_file(tmp_path / "kh")
    outcomes = Reports()
    first = backends(known_hosts_files=(path,), host_key_policy="accept-new")
    first.start(request(1, "node1", "/bin/true"), outcomes(1))
    assert outcomes.wait(1) == Outcome(0)
    recorded = Path(path).read_text().split()
    expected = (Path(ssh_testbed.directory) / "hosts/node1/ssh_host_ed25519_key.pub").read_text()
    assert recorded == [known_hosts_name(ssh_testbed, "node1"),
                        *expected.split()[:2]]
    strict = backends(known_hosts_files=(path,))
    strict.start(request(2, "node1", "/bin/true"), outcomes(2))
    assert outcomes.wait(2) == Outcome(0)


@pytest.mark.slow
def test_warn_policy_connects_without_recording(backends, tmp_path, caplog) -> None:
    path = known_hosts_file(tmp_path / "kh")
    backend = backends(known_hosts_files=(path,), host_key_policy="warn")
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    assert outcomes.wait(1) == Outcome(0)
    assert Path(path).read_text() == ""
    assert "accepting its unknown ssh-ed25519 key" in caplog.text


# -- failures are one line naming the host; nothing of paramiko leaks --------------------------
@pytest.mark.slow
def test_wrong_key_is_an_authentication_error(backends, ssh_testbed, tmp_path) -> None:
    wrong = tmp_path / "wrong_key"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(wrong))
    backend = backends(key_files=(str(wrong),))
    outcomes = Reports()
    backend.start(request(1, "node3", "/bin/true"), outcomes(1))
    reason = outcomes.wait(1).transport_error
    assert reason.startswith("node3: user ") and str(wrong) in reason and "\n" not in reason
    settings = ParamikoSettings(config_file=str(ssh_testbed.ssh_config), key_files=(str(wrong),))
    target = resolve_target("node3", settings, paramiko.SSHConfig.from_path(settings.config_file))
    with pytest.raises(AuthenticationError) as caught:
        connect(target, settings, KnownHosts("reject"), KeyCache(), lambda transport: None)
    assert caught.value.host == "node3" and str(caught.value) == reason


@pytest.mark.slow
def test_missing_remote_python_is_a_transport_error(either_mode) -> None:
    backend = either_mode(remote_python="/no/such/python3")
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    reason = outcomes.wait(1).transport_error
    assert reason.startswith("node1: the remote launcher failed (status 127)"), reason


@pytest.mark.slow
def test_a_launcher_that_ends_before_its_header_is_sent_reports_its_status(
        backends, monkeypatch) -> None:
    """Channel mode, the race CI met: the missing Python ends the channel before the wrapper's
    stdin header goes out. Forced here: the header waits until the server has closed."""
    send = paramiko.Channel.sendall

    def after_the_close(channel: paramiko.Channel, data: bytes) -> None:
        deadline = time.monotonic() + 30
        while not channel.closed and time.monotonic() < deadline:
            channel.status_event.wait(0.01)
        send(channel, data)

    monkeypatch.setattr(paramiko.Channel, "sendall", after_the_close)
    backend = backends(launch="channel", remote_python="/no/such/python3")
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    reason = outcomes.wait(1).transport_error
    assert reason.startswith("node1: the remote launcher failed (status 127)"), reason


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (no SSH banner)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        yield silent.getsockname()[1]


def test_start_does_not_wait_for_a_silent_server(open_backends, silent_port) -> None:
    backend = open_backends(port=silent_port, banner_timeout=0.5, connect_timeout=0.5)
    outcomes = Reports()
    began = time.monotonic()
    backend.start(request(1, "127.0.0.1", "/bin/true"), outcomes(1))
    assert time.monotonic() - began < 0.1
    reason = outcomes.wait(1).transport_error
    assert reason.startswith(f"127.0.0.1: cannot connect to 127.0.0.1:{silent_port}: "), reason


def test_kill_and_close_while_connecting_end_at_once(open_backends, silent_port) -> None:
    backend = open_backends(port=silent_port, banner_timeout=60, connect_timeout=60)
    outcomes = Reports()
    backend.start(request(1, "127.0.0.1", "/bin/true"), outcomes(1))
    early = backend.start(request(2, "127.0.0.1", "/bin/true"), outcomes(2))
    early.kill()  # its connection is still waiting for a banner: the job ends here and now
    assert outcomes.wait(2, timeout=0) == Outcome(
        None, transport_error="127.0.0.1: killed before it started")
    began = time.monotonic()
    backend.close()  # aborts the handshake rather than waiting out the banner timeout
    assert time.monotonic() - began < 1.0
    assert "closed" in outcomes.wait(1, timeout=0).transport_error


# -- ciphers: the cheapest first, none dropped -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("preferred", "negotiated"), [
    ((), "aes128-gcm@openssh.com"),  # the default: AES-GCM, its integrity check in C
    (("aes256-ctr",), "aes256-ctr"),
    (("3des-cbc", "aes192-ctr"), "aes192-ctr"),  # the server has no 3des-cbc: the next one
])
def test_the_preferred_ciphers_are_offered_first(ssh_testbed, preferred, negotiated) -> None:
    settings = ParamikoSettings(config_file=str(ssh_testbed.ssh_config),
                                **({"preferred_ciphers": preferred} if preferred else {}))
    target = resolve_target("node2", settings, paramiko.SSHConfig.from_path(settings.config_file))
    transport = connect(target, settings, KnownHosts("reject"), KeyCache(), lambda _: None)
    try:
        assert (transport.local_cipher, transport.remote_cipher) == (negotiated, negotiated)
        offered = transport.get_security_options().ciphers
        assert sorted(offered) == sorted(paramiko.Transport._preferred_ciphers)  # none dropped
    finally:
        close_transport(transport)

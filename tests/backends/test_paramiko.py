"""The paramiko backend on the sshd test bed: host keys, failures in one line, and the life of
real jobs (kills, dropped connections, dead agents, frozen hosts)."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import ParamikoBackend, ParamikoSettings
from lofarexec_paramiko.connect import KeyCache, connect
from lofarexec_paramiko.hosts import KnownHosts, resolve_target
from lofarexec_paramiko.hub import SETUP_THREADS

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.errors import AuthenticationError
from tests.backends.test_many_hosts import alias_config
from tests.helpers import Reports, wait_gone

#: A job that ignores SIGTERM, has a child, tells the test both pids over TCP, then waits.
STUBBORN = textwrap.dedent("""\
    import os, signal, socket, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as link:
        link.sendall(b"%d %d" % (os.getpid(), child.pid))
    time.sleep(300)
    """)


# -- helpers ---------------------------------------------------------------------------------
class PidCatcher:
    """A local port a :data:`STUBBORN` job reports its pids to; waiting is on ``accept``."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)

    def argv(self, python: str) -> tuple[str, ...]:
        return (python, "-c", STUBBORN, str(self.listener.getsockname()[1]))

    def pids(self) -> list[int]:
        link, _ = self.listener.accept()
        with link:
            return [int(word) for word in link.makefile().read().split()]

    def close(self) -> None:
        self.listener.close()


def request(job_id: int, host: str, *argv: str) -> LaunchRequest:
    return LaunchRequest(job_id=job_id, host=host, argv=argv, environment={}, token="secret")


def known_hosts_name(bed, host: str) -> str:
    """How known_hosts names a bed host: plain on port 22 (as on a fresh machine), else [a]:p."""
    address, port = bed.address(host), bed.port(host)
    return address if port == 22 else f"[{address}]:{port}"


@pytest.fixture
def open_backends(tmp_path: Path) -> Iterator[Callable[..., ParamikoBackend]]:
    """Opened backends (an empty ssh config unless given); all closed after, twice, and no
    thread of theirs left behind."""
    before = set(threading.enumerate())
    made: list[ParamikoBackend] = []
    empty_config = tmp_path / "empty_ssh_config"
    empty_config.write_text("")

    def make(**settings: object) -> ParamikoBackend:
        settings.setdefault("config_file", str(empty_config))
        backend = ParamikoBackend(ParamikoSettings(**settings))  # type: ignore[arg-type]
        backend.open()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
        backend.close()  # safe twice
    assert [thread for thread in threading.enumerate() if thread not in before] == []


@pytest.fixture
def backends(open_backends, ssh_testbed) -> Callable[..., ParamikoBackend]:
    """Opened backends reaching the bed's hosts through its ssh config."""
    return lambda **settings: open_backends(config_file=str(ssh_testbed.ssh_config), **settings)


@pytest.fixture(params=["agent", "channel"])
def either_mode(request, backends) -> Callable[..., ParamikoBackend]:
    """Opened backends of each launch mode in turn."""
    return lambda **settings: backends(launch=request.param, **settings)


def carrier(handle) -> paramiko.Channel:
    """The channel a started job runs in: its own (channel mode) or its agent's."""
    job = handle._job  # reach past the backend, to end the channel the way a crash would
    return job.channel if job.channel is not None else job.connection._agent.channel


@pytest.fixture
def pid_catcher() -> Iterator[PidCatcher]:
    catcher = PidCatcher()
    yield catcher
    catcher.close()


def known_hosts_file(path: Path, lines: str = "") -> str:
    path.write_text(lines)
    return str(path)


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


# -- connections: reuse, loss, restart ---------------------------------------------------------
@pytest.mark.slow
def test_jobs_share_one_connection_within_the_sessions_limit(backends) -> None:
    backend = backends(sessions=3, launch="channel")
    outcomes = Reports()
    for job_id in range(30):  # three at a time, like max_per_node = 3
        backend.start(request(job_id, "node4", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"),
                      outcomes(job_id))
        if job_id >= 2:
            outcomes.wait(job_id - 2)
    assert all(outcomes.wait(job_id) == Outcome(3, output="out\n", errors="err\n")
               for job_id in range(30))
    assert backend.connection_counts() == {"node4": 1}
    assert outcomes.each_once()


@pytest.mark.slow
def test_connection_comes_back_after_host_restart(either_mode, ssh_testbed, pid_catcher) -> None:
    backend = either_mode()
    outcomes = Reports()
    backend.start(request(1, "node3", *pid_catcher.argv(ssh_testbed.python)), outcomes(1))
    pids = pid_catcher.pids()
    ssh_testbed.stop_host("node3")
    try:
        lost = outcomes.wait(1)
        backend.start(request(2, "node3", "/bin/true"), outcomes(2))
        refused = outcomes.wait(2)
    finally:
        ssh_testbed.start_host("node3")
    assert lost.transport_error.startswith("node3: the connection was lost while the job ran")
    assert refused.transport_error.startswith("node3: cannot connect to")
    assert wait_gone(pids, 2.0)
    backend.start(request(3, "node3", "/bin/true"), outcomes(3))
    assert outcomes.wait(3) == Outcome(0)
    assert backend.connection_counts() == {"node3": 3}


# -- kill: EOF on the wrapper's stdin, however the channel ends --------------------------------
@pytest.mark.slow
def test_kill_sends_eof_and_reports_the_wrapper_status(either_mode, ssh_testbed, pid_catcher):
    backend = either_mode(kill_grace=0.5)
    outcomes = Reports()
    handle = backend.start(request(1, "node2", *pid_catcher.argv(ssh_testbed.python)),
                           outcomes(1))
    pids = pid_catcher.pids()
    began = time.monotonic()
    handle.kill()
    handle.kill()
    assert outcomes.wait(1, timeout=5).returncode == -9  # it ignored TERM
    assert time.monotonic() - began < 2.0 and wait_gone(pids, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["close the channel", "drop the connection"])
def test_channel_close_alone_kills_the_remote_job(either_mode, ssh_testbed, pid_catcher, how):
    backend = either_mode()
    outcomes = Reports()
    handle = backend.start(request(1, "node1", *pid_catcher.argv(ssh_testbed.python)),
                           outcomes(1))
    pids = pid_catcher.pids()
    if how == "close the channel":
        carrier(handle).close()
    else:
        carrier(handle).get_transport().close()
    assert wait_gone(pids, 2.0), f"{how} left {pids} running"
    assert outcomes.wait(1).transport_error is not None


@pytest.mark.slow
def test_a_dead_agent_fails_its_jobs_and_the_next_job_gets_a_new_one(backends, ssh_testbed,
                                                                     pid_catcher) -> None:
    backend = backends()
    outcomes = Reports()
    backend.start(request(1, "node2", *pid_catcher.argv(ssh_testbed.python)), outcomes(1))
    pids = pid_catcher.pids()
    with open(f"/proc/{pids[0]}/stat") as stat:
        agent_pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    os.kill(agent_pid, signal.SIGKILL)  # as the OOM killer would: the job is left orphaned
    reason = outcomes.wait(1).transport_error
    assert reason.startswith("node2: the host's agent ended (no exit status"), reason
    assert wait_gone(pids, 0.5)  # killed from a channel of its own before the report
    backend.start(request(2, "node2", "/bin/true"), outcomes(2))
    assert outcomes.wait(2) == Outcome(0)
    assert backend.connection_counts() == {"node2": 2}


@pytest.mark.slow
def test_a_request_no_argv_can_carry_fails_alone(backends) -> None:
    backend = backends()
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/echo", "a\0b"), outcomes(1))
    backend.start(request(2, "node1", "/bin/true"), outcomes(2))
    assert "holds a NUL byte" in outcomes.wait(1).transport_error
    assert outcomes.wait(2) == Outcome(0)


@pytest.mark.slow
def test_close_kills_running_jobs_and_refuses_new_ones(either_mode, ssh_testbed, pid_catcher):
    backend = either_mode()
    outcomes = Reports()
    backend.start(request(1, "node4", *pid_catcher.argv(ssh_testbed.python)), outcomes(1))
    pids = pid_catcher.pids()
    backend.close()  # kills the running job and waits for its report
    assert outcomes.wait(1, timeout=0).returncode == -9
    assert wait_gone(pids, 0.5)
    backend.start(request(2, "node4", "/bin/true"), outcomes(2))
    assert "closed" in outcomes.wait(2, timeout=0).transport_error


# -- silence and garbage: a frozen host, a login script that prints ----------------------------
def sshd_session_of(pid: int) -> int:
    """The sshd process serving the connection a job runs through: its nearest sshd ancestor."""
    while Path(f"/proc/{pid}/comm").read_text().strip() != "sshd":
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    return pid


@pytest.mark.slow
def test_a_frozen_host_is_given_up_after_the_silence_limit(either_mode, ssh_testbed,
                                                           pid_catcher) -> None:
    """The host's sshd session is stopped: its kernel still answers TCP keepalives, so only
    the probes (and the agent's pings) can show that nothing answers any more."""
    backend = either_mode(alive_interval=1)  # given up after 4 s of silence
    outcomes = Reports()
    backend.start(request(1, "node3", *pid_catcher.argv(ssh_testbed.python)), outcomes(1))
    pids = pid_catcher.pids()
    session = sshd_session_of(pids[0])
    os.kill(session, signal.SIGSTOP)
    try:
        reason = outcomes.wait(1).transport_error
    finally:
        os.kill(session, signal.SIGCONT)
    assert reason.startswith("node3: "), reason
    assert "was silent for 4 s (a frozen host or link?)" in reason, reason
    assert wait_gone(pids, 10.0)  # by the agent's own limit, or at the wrapper's EOF once thawed
    backend.start(request(2, "node3", "/bin/true"), outcomes(2))
    assert outcomes.wait(2) == Outcome(0)  # on a new connection


@pytest.mark.slow
def test_a_login_script_that_prints_fails_the_agents_jobs_in_words_saying_so(
        backends, ssh_testbed, tmp_path) -> None:
    chatty = tmp_path / "chatty-python"
    chatty.write_text(f'#!/bin/sh\necho "Welcome to node1"\nexec {ssh_testbed.python} "$@"\n')
    chatty.chmod(0o755)
    backend = backends(remote_python=str(chatty))
    outcomes = Reports()
    backend.start(request(1, "node1", "/bin/true"), outcomes(1))
    reason = outcomes.wait(1).transport_error
    assert reason.startswith("node1: the host printed 'Welcome to node1\\n") and (
        "a login script writing to standard output?" in reason), reason


# -- many hosts: threads and descriptors per host (issue 17) -----------------------------------
MANY = 64


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["agent", "channel"])
def test_many_hosts_cost_a_socket_and_paramikos_thread_each(open_backends, ssh_testbed,
                                                            tmp_path, launch) -> None:
    """Once every host's job has ended (its connection still open): one descriptor per host
    (the socket; no channel has one) and one thread per host (paramiko's transport), plus
    the backend's hub and at most SETUP_THREADS set-up threads."""
    aliases = alias_config(ssh_testbed.ssh_config, MANY, tmp_path / "aliases")
    threads_before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    backend = open_backends(config_file=str(aliases), launch=launch)
    outcomes = Reports()
    for number in range(MANY):
        backend.start(request(number, f"h{number + 1}", "/bin/true"), outcomes(number))
    assert all(outcomes.wait(number, timeout=120) == Outcome(0) for number in range(MANY))
    fds = len(os.listdir("/proc/self/fd")) - fds_before
    new = [thread for thread in set(threading.enumerate()) - threads_before
           if thread.is_alive()]
    ours = sorted(thread.name for thread in new if thread.name.startswith("paramiko-"))
    assert ours[0] == "paramiko-hub" and len(ours) <= 1 + SETUP_THREADS, ours
    assert all(name.startswith("paramiko-setup-") for name in ours[1:]), ours
    assert len(new) - len(ours) == MANY  # paramiko's transport threads
    assert fds <= MANY + 2, f"{fds} descriptors for {MANY} hosts"  # + the hub's eventfd
    assert backend.connection_counts() == {f"h{index + 1}": 1 for index in range(MANY)}

"""The paramiko backend's jobs on the sshd test bed: connections reused, lost and restarted,
kills, dead agents, frozen hosts, and what many hosts cost (connecting: test_paramiko_connect)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from lofarexec_paramiko import hub
from lofarexec_paramiko.hub import SETUP_THREADS

from lofarexec.backend import Outcome
from tests.backends.paramiko_helpers import carrier, request
from tests.backends.test_many_hosts import alias_config
from tests.helpers import Reports, wait_gone


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
                                                            tmp_path, launch,
                                                            monkeypatch) -> None:
    """Once every host's job has ended (its connection still open): one descriptor per host
    (the socket; no channel has one) and one thread per host (paramiko's transport), plus
    the backend's hub and at most SETUP_THREADS set-up threads (no host stalls here; a slow
    machine must not make a log-in look stalled)."""
    monkeypatch.setattr(hub, "STALL_SECONDS", 3600.0)
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

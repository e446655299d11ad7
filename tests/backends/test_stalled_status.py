"""A job that ended on its host while the link was frozen ends with the status its agent saw,
fetched over a fresh session once the control node gives up on the link (issue 12, item 9)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lofarexec.backend import Backend, LaunchRequest, Outcome
from lofarexec.job import JobState
from lofarexec.run.batch import verdict
from tests.helpers import Reports, wait_gone

pytestmark = pytest.mark.slow

#: Tells the test its pid, then ends (status 0) when the test says so.
ENDS_WHEN_TOLD = ("import os, socket, sys; link = socket.create_connection(('127.0.0.1', "
                  "int(sys.argv[1]))); link.sendall(b'%d' % os.getpid()); link.recv(1)")


def sshd_session_of(pid: int) -> int:
    """The sshd process serving the connection a job runs through: its nearest sshd ancestor."""
    while Path(f"/proc/{pid}/comm").read_text().strip() != "sshd":
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    return pid


def ssh_backend(bed) -> Backend:
    from lofarexec_ssh import SshBackend, SshSettings

    return SshBackend(SshSettings(config_file=str(bed.ssh_config), alive_interval=1,
                                  kill_grace=0.3))


def paramiko_backend(bed) -> Backend:
    from lofarexec_paramiko import ParamikoBackend, ParamikoSettings

    return ParamikoBackend(ParamikoSettings(config_file=str(bed.ssh_config), launch="agent",
                                            alive_interval=1, kill_grace=0.3))


@pytest.fixture(params=[ssh_backend, paramiko_backend], ids=["ssh", "paramiko"])
def backend(request, ssh_testbed) -> Iterator[Backend]:
    made: Callable[..., Backend] = request.param
    opened = made(ssh_testbed)
    opened.open()
    yield opened
    opened.close()


def test_a_job_that_ended_while_the_link_was_frozen_ends_with_its_own_status(
        backend, ssh_testbed) -> None:
    outcomes = Reports()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = str(listener.getsockname()[1])
        backend.start(LaunchRequest(1, "node3", (ssh_testbed.python, "-c", ENDS_WHEN_TOLD, port),
                                    {}, token="t"), outcomes(1))
        link, _ = listener.accept()
        with link:
            job_pid = int(link.recv(64))
            session = sshd_session_of(job_pid)
            os.kill(session, signal.SIGSTOP)  # the link to node3 stalls; its host runs on
            try:
                link.sendall(b"x")  # the job ends (status 0) on its host
                assert wait_gone(job_pid, 10.0)
                outcome = outcomes.wait(1)  # after the silence limit (4 s)
            finally:
                os.kill(session, signal.SIGCONT)
    assert outcome.transport_error is None, outcome
    assert outcome.returncode == 0, outcome
    assert outcome.note == "status fetched after the link to node3 stalled", outcome
    assert verdict(outcome, None, None) == (JobState.SUCCEEDED, outcome.note)  # the job's
    backend.start(LaunchRequest(2, "node3", ("/bin/true",), {}, token="t"), outcomes(2))
    assert outcomes.wait(2) == Outcome(0)  # the host serves jobs on a new link

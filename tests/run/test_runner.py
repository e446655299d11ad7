"""The runner around the scheduler: job-list checks, the exchange wait, and job tokens that end
with their jobs."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading

import pytest

from lofarexec.backend import LaunchRequest, Outcome, Report
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello
from lofarexec.errors import ConfigError, JobListError, WaitTimeout
from lofarexec.job import ComputeJob
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.plugin.spec import hookimpl
from lofarexec.run.journal import JournalWriter
from lofarexec.run.runner import JobRunner
from lofarexec.testing.mock import MockBackend
from tests.helpers import REPO

HOST = "h"


def runner_for(config, *plugins: object) -> JobRunner:
    return JobRunner(config, recipe_name="tokens", error=threading.Event(),
                     plugin_manager=build_plugin_manager([JournalWriter(), *plugins]))


def connect(address: tuple[str, int], job_id: int, token: str) -> socket.socket:
    """Open a node's channel and say hello, as a node script does."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(encode_frame(hello(job_id, token)))
    return sock


def log_frame(message: str) -> bytes:
    return encode_frame({"type": "log", "name": f"node.{HOST}.tokens", "levelno": 20,
                         "levelname": "INFO", "msg": message, "created": 0.0, "exc_text": None})


def close_as_a_node(sock: socket.socket) -> None:
    """Send one record, half-close and wait for the server's EOF, as a node ends."""
    with sock:
        sock.sendall(log_frame("bye"))
        sock.shutdown(socket.SHUT_WR)
        wait_for_server_close(sock)


def wait_for_server_close(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


class ChannelProbe(MockBackend):
    """Each job talks on its channel like a node, then ends; job 1 first tries job 0's token,
    and job 2 keeps its channel open a moment after its end is reported."""

    name = "probe"
    server: LogServer | None = None  # the run's, set by the test
    heard = threading.Event()  # set by the test when a node's record reaches the master

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.tokens: dict[int, str] = {}

    def start(self, request: LaunchRequest, report: Report):
        address = (request.argv[-2], int(request.argv[-1]))
        self.tokens[request.job_id] = request.token
        if request.job_id == 1:  # job 0 has its final state and its channel is closed
            with connect(address, 0, self.tokens[0]) as refused:
                wait_for_server_close(refused)
        sock = connect(address, request.job_id, request.token)
        if request.job_id == 2:  # heard from, channel open when its end is reported
            self.heard.clear()
            sock.sendall(log_frame("still here"))
            assert self.heard.wait(5)
            threading.Timer(0.2, close_as_a_node, (sock,)).start()
        else:
            close_as_a_node(sock)
            # A node's process ends after the server has closed its channel; make sure the
            # server has also counted the connection closed before the end is reported.
            assert self.server is not None
            self.server.job_exited(request.job_id)
            assert self.server.wait_job_closed(request.job_id, 5)
        report(Outcome(0))
        return Ended()


class Ended:
    def kill(self) -> None:
        """The job has ended already."""


class ProbePlugin:
    @hookimpl
    def lofarexec_register_backends(self, registry) -> None:
        registry.add(ChannelProbe)


def test_a_finished_job_s_token_is_refused(make_config, caplog, monkeypatch, request):
    forgotten: list[int] = []
    ended, register = LogServer.job_ended, LogServer.register_job

    def ended_spy(server: LogServer, job_id: int) -> tuple[bool, bool]:
        said_hello, forgot = ended(server, job_id)
        if forgot:
            forgotten.append(job_id)
        return said_hello, forgot

    def register_spy(server: LogServer, job_id: int, host: str) -> str:
        ChannelProbe.server = server
        return register(server, job_id, host)

    monkeypatch.setattr(LogServer, "job_ended", ended_spy)
    monkeypatch.setattr(LogServer, "register_job", register_spy)
    monkeypatch.setattr(ChannelProbe, "server", None)
    monkeypatch.setattr(ChannelProbe, "heard", threading.Event())
    heard = logging.Handler()
    heard.emit = lambda record: ChannelProbe.heard.set()  # type: ignore[method-assign]
    logging.getLogger(f"node.{HOST}").addHandler(heard)
    request.addfinalizer(lambda: logging.getLogger(f"node.{HOST}").removeHandler(heard))
    caplog.set_level(logging.INFO)
    jobs = [ComputeJob(HOST, "node") for _ in range(3)]
    runner_for(make_config(method="probe"), ProbePlugin()).schedule(jobs, max_per_node=1)
    assert [job.results["state"] for job in jobs] == ["succeeded"] * 3
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "lofarexec.channel.logserver" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unknown job 0" in warnings[0], warnings
    # Jobs 0 and 1 closed before their ends were seen; job 2's channel was still open, so its
    # token lasted until the batch's end (its last record still came in).
    assert forgotten == [0, 1]
    received = [r.getMessage() for r in caplog.records if r.name.startswith(f"node.{HOST}.")]
    assert received == ["bye", "bye", "still here", "bye"]  # none for the refused hello


def test_job_list_mistakes_are_job_list_errors(make_config):
    runner = runner_for(make_config(method="mock"))
    with pytest.raises(JobListError, match="job 1: cannot split command"):
        runner.schedule([ComputeJob(HOST, "node"), ComputeJob(HOST, "node 'open")])
    with pytest.raises(JobListError, match="job 0: its stored arguments are not JSON"):
        runner.schedule([ComputeJob(HOST, "node", [{1, 2}], store_arguments=True)])
    with pytest.raises(JobListError, match="a job limit must be a positive number, not 0"):
        runner.schedule([ComputeJob(HOST, "node")], max_per_node=0)


def test_waiting_for_a_batch_that_never_starts_is_a_wait_timeout(make_config):
    runner = runner_for(make_config(method="mock"))
    with pytest.raises(WaitTimeout, match="no batch of jobs started"):
        runner.exchange_when_running(timeout=0.01)
    with pytest.raises(TimeoutError):  # older `except TimeoutError` code still works
        runner.exchange_when_running(timeout=0.01)


FLOOD_NODE = """
import lofarexec.node
lofarexec.node.CLOSE_TIMEOUT = 0.01  # exit without waiting for the master to read it all
for index in range(int(args[0])):
    self.logger.debug("record %d", index)
self.logger.error("final line of job %s", args[1])
return 0
"""


@pytest.mark.slow
def test_every_record_a_node_sent_reaches_the_log(make_config, node_script, caplog, tmp_path,
                                                  request):
    """8 local jobs each log 20,000 records and a final ERROR line: all 8 final lines arrive.

    The master writes a formatted log file as a recipe does, so it re-emits slower than the
    nodes send; the nodes exit without waiting for it (as a killed node does), and the records
    still in flight when the jobs end must still come out.
    """
    caplog.set_level(logging.DEBUG)
    log_file = logging.FileHandler(tmp_path / "pipeline.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger("node").addHandler(log_file)
    request.addfinalizer(lambda: (logging.getLogger("node").removeHandler(log_file),
                                  log_file.close()))
    command = node_script(FLOOD_NODE, name="flood")
    jobs = [ComputeJob(f"h{index}", command, ["20000", str(index)]) for index in range(8)]
    runner_for(make_config()).schedule(jobs)
    assert [job.results["state"] for job in jobs] == ["succeeded"] * 8
    finals = {r.getMessage() for r in caplog.records if r.getMessage().startswith("final line")}
    assert finals == {f"final line of job {index}" for index in range(8)}
    node_records = sum(1 for r in caplog.records if r.name.startswith("node."))
    assert node_records == 8 * 20_001


class SilentChannel(MockBackend):
    """Each job's node says hello and one record, ends, and leaves its channel open and silent
    (as a child process that inherited the socket would)."""

    name = "silent"
    sockets: list[socket.socket] = []

    def start(self, request: LaunchRequest, report: Report):
        sock = connect((request.argv[-2], int(request.argv[-1])), request.job_id, request.token)
        sock.sendall(log_frame("hello from a node that will not close"))
        self.sockets.append(sock)
        assert ChannelProbe.heard.wait(5)  # its channel is open on the master's side
        report(Outcome(0))
        return Ended()


class SilentPlugin:
    @hookimpl
    def lofarexec_register_backends(self, registry) -> None:
        registry.add(SilentChannel)


def test_a_silent_open_channel_is_given_up_with_a_warning(make_config, caplog, monkeypatch,
                                                         request):
    monkeypatch.setattr("lofarexec.run.runner.LOG_STALL_SECONDS", 0.2)
    monkeypatch.setattr(SilentChannel, "sockets", [])
    monkeypatch.setattr(ChannelProbe, "heard", threading.Event())
    heard = logging.Handler()
    heard.emit = lambda record: ChannelProbe.heard.set()  # type: ignore[method-assign]
    logging.getLogger(f"node.{HOST}").addHandler(heard)
    request.addfinalizer(lambda: logging.getLogger(f"node.{HOST}").removeHandler(heard))
    caplog.set_level(logging.INFO)
    try:
        runner_for(make_config(method="silent"), SilentPlugin()).schedule([ComputeJob(HOST, "n")])
    finally:
        for sock in SilentChannel.sockets:
            sock.close()
    given_up = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert given_up == ["job 0: its node's log channel delivered nothing for 0.2 s after the "
                        "job ended; giving up on it"]


def test_a_loopback_log_address_for_remote_hosts_is_an_error(make_config, monkeypatch, caplog):
    monkeypatch.setattr("lofarexec.run.runner._this_host_address", lambda: "127.0.1.1")
    monkeypatch.setattr(MockBackend, "local_only", False)
    with pytest.raises(ConfigError, match=r"\[logging\] this machine's name resolves to the "
                                          r"loopback address 127.0.1.1.*advertise_address"):
        runner_for(make_config(method="mock")).schedule([ComputeJob("lce001.invalid", "n")])
    caplog.set_level(logging.WARNING)
    jobs = [ComputeJob("localhost", "n")]  # every host is this machine: a warning only
    runner_for(make_config(method="mock")).schedule(jobs)
    assert any("is loopback: only nodes on this machine" in r.getMessage()
               for r in caplog.records)


@pytest.mark.slow
def test_a_run_raises_the_open_files_limit_to_the_hard_limit(tmp_path):
    script = tmp_path / "limit.py"
    script.write_text(
        "import logging, resource\n"
        "from lofarexec.run.runner import raise_open_files_limit\n"
        "raise_open_files_limit(logging.getLogger('x'))\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    result = subprocess.run(["bash", "-c", f"ulimit -Sn 64 && {sys.executable} {script}"],
                            capture_output=True, text=True, check=True, cwd=REPO)
    soft, hard = result.stdout.split()
    assert soft == hard

"""What the log receiver does at its limits: records unread at a stop, descriptors running out,
strangers flooding the port. Real sockets on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello
from tests.channel.logserver_helpers import wait_for_server_close

HOST = "lce001"


def log_frame(message: str = "a record") -> bytes:
    return encode_frame({"type": "log", "name": f"node.{HOST}.x", "levelno": logging.INFO,
                         "levelname": "INFO", "msg": message, "created": 0.0, "exc_text": None})


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "lofarexec.channel.logserver" and r.levelno >= logging.WARNING]


class Gate(logging.Handler):
    """Holds the serving thread inside the first node record until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.opened = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.opened.wait(10)


@pytest.fixture
def gate() -> Iterator[Gate]:
    handler = Gate()
    node_logger = logging.getLogger(f"node.{HOST}")
    node_logger.addHandler(handler)
    try:
        yield handler
    finally:
        handler.opened.set()
        node_logger.removeHandler(handler)


def test_records_unread_at_a_stop_are_counted_in_a_warning(
    caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    server = LogServer(recipe_name="x")
    server.start()
    token = server.register_job(4, HOST)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(encode_frame(hello(4, token)) + log_frame("first"))
        assert gate.entered.wait(5)  # the server is inside the first record
        sock.sendall(b"".join(log_frame(f"later {index}") for index in range(100)))
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        gate.opened.set()
        stopper.join()
    lost = [text for text in warnings_of(caplog) if "job 4 on lce001" in text]
    assert len(lost) == 1 and "about 100 records" in lost[0], lost


def wait_until(condition, what: str) -> None:
    """Poll ``condition`` (the server's state has no event to wait on); fail after 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def report_as_a_node(server: LogServer, job_id: int, token: str) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(encode_frame(hello(job_id, token)) + log_frame(f"job {job_id} reports"))
        sock.shutdown(socket.SHUT_WR)
        wait_for_server_close(sock)


@pytest.mark.slow
def test_a_stranger_holds_a_few_kb_per_connection_and_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with LogServer(recipe_name="x") as server, contextlib.ExitStack() as strangers:
        for _ in range(20):  # announce a big frame: refused from its header
            sock = strangers.enter_context(socket.create_connection(server.address, timeout=5))
            with contextlib.suppress(OSError):  # the server may reset before all is sent
                sock.sendall(struct.pack(">I", 1_000_000) + b"x" * 100_000)
            wait_for_server_close(sock)
        partial = []
        for _ in range(20):  # a small frame, never finished: held, but only it
            sock = strangers.enter_context(socket.create_connection(server.address, timeout=5))
            sock.sendall(struct.pack(">I", 4000) + b"y" * 3999)
            partial.append(sock)
        wait_until(lambda: server.unauthenticated() == (20, 20 * 4003), "all 20 are buffered")
        assert len(warnings_of(caplog)) == 10  # the first ten refusals; the rest at debug


@pytest.mark.slow
def test_strangers_cannot_stop_60_jobs_from_reporting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with LogServer(recipe_name="x") as server, contextlib.ExitStack() as strangers:
        tokens = {job_id: server.register_job(job_id, HOST) for job_id in range(60)}
        for index in range(400):  # idle ones, and some that send junk and stay
            sock = strangers.enter_context(socket.create_connection(server.address, timeout=5))
            if index % 4 == 0:
                sock.sendall(b"GET / HTTP/1.0\r\n")
        wait_until(lambda: server.unauthenticated()[0] >= 40, "the strangers are in")
        jobs = [threading.Thread(target=report_as_a_node, args=(server, job_id, token))
                for job_id, token in tokens.items()]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join()
        assert [server.records_received(job_id) for job_id in tokens] == [1] * 60
        held, buffered = server.unauthenticated()
        assert held <= 64 and buffered <= held * 4100
    assert len(warnings_of(caplog)) <= 10


def test_outputs_kept_in_memory_are_capped() -> None:
    exchange = JobExchange(max_kept_bytes=1000)
    replies: list[dict] = []
    exchange.handle(1, {"type": "outputs", "outputs": {"a": "x" * 600}}, replies.append)
    exchange.handle(2, {"type": "outputs", "outputs": {"b": "y" * 600}}, replies.append)
    assert replies[0] == {"type": "ack"}
    assert replies[1]["type"] == "error" and "max_kept_mib" in replies[1]["message"]
    assert exchange.take_outputs(1) == {"a": "x" * 600}  # taken: its room is free again
    exchange.handle(2, {"type": "outputs", "outputs": {"b": "y" * 600}}, replies.append)
    assert replies[2] == {"type": "ack"}


class Heard(logging.Handler):
    """Sets ``event`` when a warning of the log server mentions ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


def cpu_ticks(stat: BinaryIO) -> int:
    """User + system clock ticks used by the thread whose ``/proc/.../stat`` is open."""
    stat.seek(0)
    fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def descriptors_left() -> Iterator[list[int]]:
    """Lower the open files limit near what is open now; restore it (and close) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 30, hard))
    filler: list[int] = []
    try:
        yield filler
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
def test_out_of_descriptors_the_server_pauses_says_so_once_and_recovers(
    caplog: pytest.LogCaptureFixture, descriptors_left: list[int]
) -> None:
    caplog.set_level(logging.INFO)
    heard = Heard("cannot accept node connections")
    logging.getLogger("lofarexec.channel.logserver").addHandler(heard)
    try:
        with LogServer(recipe_name="x") as server:
            token = server.register_job(1, HOST)
            assert server._thread is not None
            with open(f"/proc/self/task/{server._thread.native_id}/stat", "rb") as stat, \
                    socket.socket() as node:
                with contextlib.suppress(OSError):  # use up every descriptor left
                    while True:
                        descriptors_left.append(os.open(os.devnull, os.O_RDONLY))
                node.connect(server.address)  # queued: the server cannot accept it
                node.sendall(encode_frame(hello(1, token)) + log_frame("got in at last"))
                assert heard.event.wait(5)
                before = cpu_ticks(stat)
                time.sleep(0.5)  # a window to see no busy loop in (nothing to wait for)
                assert cpu_ticks(stat) - before < 10, "the server spins"
                while descriptors_left:
                    os.close(descriptors_left.pop())
                node.shutdown(socket.SHUT_WR)
                wait_for_server_close(node)
            assert server.records_received(1) == 1
    finally:
        logging.getLogger("lofarexec.channel.logserver").removeHandler(heard)
    told = [text for text in warnings_of(caplog) if "cannot accept" in text]
    assert len(told) == 1 and "needs at least" in told[0], told

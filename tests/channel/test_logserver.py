"""The run's log receiver, over real TCP sockets on 127.0.0.1.

Every wait here is on an observable event: the server closing our socket (it does so only after
it has handled all we sent, and after logging its warning), or ``wait_job_closed``.
"""

from __future__ import annotations

import logging
import pickle
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello

HOST = "lce001"
RECIPE = "example_parallel"


@pytest.fixture
def server() -> Iterator[LogServer]:
    with LogServer(hello_timeout=0.3, recipe_name=RECIPE) as log_server:
        yield log_server


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def connect(server: LogServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def peer_name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def wait_for_server_close(sock: socket.socket) -> None:
    """Block until the server closes its end (EOF or reset); fail after 5 s."""
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


def finish(sock: socket.socket) -> None:
    """Half-close as a node does, then wait until the server has read everything and closed."""
    sock.shutdown(socket.SHUT_WR)
    wait_for_server_close(sock)


def log_frame(**override: object) -> bytes:
    fields = {
        "type": "log",
        "name": f"node.{HOST}.{RECIPE}",
        "levelno": logging.INFO,
        "levelname": "INFO",
        "msg": "Received x as argument",
        "created": 1288271658.25,
        "exc_text": None,
    }
    return encode_frame({**fields, **override})


def node_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("node.")]


def server_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "lofarexec.channel.logserver" and r.levelno == logging.WARNING
    ]


def send_and_wait(server: LogServer, payload: bytes) -> str:
    """Send ``payload`` on a fresh connection, wait for the server to drop it; return our peer."""
    with connect(server) as sock:
        peer = peer_name(sock)
        sock.sendall(payload)
        wait_for_server_close(sock)
    return peer


# --- lifecycle ---------------------------------------------------------------------------------


def test_address_is_an_ephemeral_port_on_the_bind_host(server: LogServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1" and port > 0


def test_advertise_address_is_what_nodes_are_told() -> None:
    with LogServer(advertise_address="head.example.org") as log_server:
        assert log_server.address[0] == "head.example.org"


def test_stop_is_idempotent_and_closes_connections() -> None:
    log_server = LogServer()
    log_server.stop()  # never started: nothing to do
    log_server.start()
    log_server.register_job(1, HOST)
    with connect(log_server) as sock:
        log_server.stop()
        wait_for_server_close(sock)
    log_server.stop()
    assert log_server._thread is not None and not log_server._thread.is_alive()


def test_tokens_are_fresh_and_random(server: LogServer) -> None:
    tokens = {server.register_job(i, HOST) for i in range(20)}
    assert len(tokens) == 20
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)


# --- records -----------------------------------------------------------------------------------


def test_records_round_trip_under_the_registered_host(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    token = server.register_job(3, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(3, token)))
        sock.sendall(log_frame(msg="100% done %s", levelno=logging.WARNING, levelname="DEBUG"))
        sock.sendall(log_frame(name="node.other-host.sub.module", exc_text="Traceback: boom"))
        finish(sock)
    server.job_exited(3)
    assert server.wait_job_closed(3, timeout=5)
    assert server.records_received(3) == 2
    first, second = node_records(captured)
    assert first.name == f"node.{HOST}.{RECIPE}"
    assert (first.levelno, first.levelname) == (logging.WARNING, "WARNING")
    assert first.getMessage() == "100% done %s" and first.args is None
    assert first.created == 1288271658.25 and first.msecs == 250.0
    assert (first.__dict__["lofarexec_job_id"], first.__dict__["lofarexec_host"]) == (3, HOST)
    assert second.name == f"node.{HOST}.sub.module"
    assert second.exc_text == "Traceback: boom"
    assert server_warnings(captured) == []


@pytest.mark.parametrize(
    ("claimed", "forced"),
    [
        ("lofarexec.recipe", f"node.{HOST}.{RECIPE}"),
        (RECIPE, f"node.{HOST}.{RECIPE}"),
        ("root", f"node.{HOST}.{RECIPE}"),
        ("", f"node.{HOST}.{RECIPE}"),
        ("node.lce999.example_parallel", f"node.{HOST}.example_parallel"),
        ("node.lce999", f"node.{HOST}.{RECIPE}"),
        ("node.lce999.bad name\n", f"node.{HOST}.{RECIPE}"),
        ("node.lce999..", f"node.{HOST}.{RECIPE}"),
    ],
)
def test_forged_names_are_forced_under_the_registered_host(
    server: LogServer, captured: pytest.LogCaptureFixture, claimed: str, forced: str
) -> None:
    token = server.register_job(1, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame(name=claimed))
        finish(sock)
    assert [r.name for r in node_records(captured)] == [forced]
    assert not [r for r in captured.records if r.name in ("lofarexec.recipe", RECIPE, "root")]


def test_dotted_registered_host_is_kept_whole(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    token = server.register_job(1, "lce001.cep.nl")
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame(name="node.lce001.cep.nl.Task"))
        finish(sock)
    assert [r.name for r in node_records(captured)] == ["node.lce001.cep.nl.Task"]


def test_levels_are_clamped_and_the_master_level_is_respected(
    server: LogServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = server.register_job(1, HOST)
    with connect(server) as sock:
        frames = [log_frame(levelno=10**6), log_frame(levelno=logging.DEBUG), log_frame(levelno=-3)]
        sock.sendall(encode_frame(hello(1, token)) + b"".join(frames))
        finish(sock)
    assert [r.levelname for r in node_records(caplog)] == ["CRITICAL"]
    assert server.records_received(1) == 3


# --- refused connections -----------------------------------------------------------------------


def assert_one_warning(caplog: pytest.LogCaptureFixture, peer: str, reason: str) -> None:
    warnings = server_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert peer in warnings[0] and reason in warnings[0], warnings[0]
    assert node_records(caplog) == []


def test_wrong_token(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    server.register_job(1, HOST)
    peer = send_and_wait(server, encode_frame(hello(1, "0" * 32)) + log_frame())
    assert_one_warning(captured, peer, "wrong token for job 1")


def test_non_ascii_token_is_just_wrong(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    server.register_job(1, HOST)
    peer = send_and_wait(server, encode_frame(hello(1, "é" * 32)))
    assert_one_warning(captured, peer, "wrong token")


def test_unknown_job(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    token = server.register_job(1, HOST)
    peer = send_and_wait(server, encode_frame(hello(2, token)) + log_frame())
    assert_one_warning(captured, peer, "unknown job 2")


def test_forgotten_job_is_unknown(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    token = server.register_job(1, HOST)
    server.forget_job(1)
    peer = send_and_wait(server, encode_frame(hello(1, token)))
    assert_one_warning(captured, peer, "unknown job 1")
    with pytest.raises(KeyError):
        server.records_received(1)


def test_first_frame_must_be_hello(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    server.register_job(1, HOST)
    peer = send_and_wait(server, log_frame())
    assert_one_warning(captured, peer, "not hello")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds"),
        (b"\xff\xff\xff\xff" + b"x" * 1000, "4294967295 bytes exceeds"),
        (pickle.dumps({"v": 1, "type": "hello", "job_id": 1}), "exceeds"),
        (struct.pack(">I", 20) + pickle.dumps({"v": 1})[:20], "not UTF-8"),
        (struct.pack(">I", 4) + b"junk", "not JSON"),
        (struct.pack(">I", 2) + b"[]", "not an object"),
        (struct.pack(">I", 2) + b"{}", "version"),
        (encode_frame({"type": "hello"})[:-3], "closed inside a frame"),
        (b"", "closed before hello"),
    ],
)
def test_junk_is_refused_with_one_warning(
    server: LogServer, captured: pytest.LogCaptureFixture, payload: bytes, reason: str
) -> None:
    with connect(server) as sock:
        peer = peer_name(sock)
        sock.sendall(payload)
        finish(sock)
    assert_one_warning(captured, peer, reason)


def test_frames_after_a_protocol_error_are_ignored(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    token = server.register_job(1, HOST)
    good = encode_frame(hello(1, token)) + log_frame(msg="before")
    peer = send_and_wait(server, good + struct.pack(">I", 4) + b"junk" + log_frame(msg="after"))
    warnings = server_warnings(captured)
    assert len(warnings) == 1 and peer in warnings[0] and "job 1 on lce001" in warnings[0]
    assert [r.getMessage() for r in node_records(captured)] == ["before"]


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (encode_frame(hello(1, "x")), "second hello"),
        (encode_frame({"type": "result"}), "unknown frame type"),
        (log_frame(levelno="INFO"), "bad level"),
        (log_frame(msg={"$": "x"}), "bad message"),
    ],
)
def test_bad_frames_after_hello(
    server: LogServer, captured: pytest.LogCaptureFixture, second: bytes, reason: str
) -> None:
    token = server.register_job(1, HOST)
    peer = send_and_wait(server, encode_frame(hello(1, token)) + second)
    warnings = server_warnings(captured)
    assert len(warnings) == 1 and peer in warnings[0] and reason in warnings[0], warnings


def test_silent_connection_times_out(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        peer = peer_name(sock)
        wait_for_server_close(sock)
    assert 0.25 <= time.monotonic() - started < 4
    assert_one_warning(captured, peer, "no hello within 0.3 s")


def test_bad_connection_does_not_disturb_a_good_one(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    token = server.register_job(1, HOST)
    with connect(server) as good:
        good.sendall(encode_frame(hello(1, token)) + log_frame(msg="one"))
        bad_peer = send_and_wait(server, b"\xff\xff\xff\xff")
        with connect(server) as silent:
            wait_for_server_close(silent)
        good.sendall(log_frame(msg="two"))
        finish(good)
    server.job_exited(1)
    assert server.wait_job_closed(1, timeout=5)
    assert [r.getMessage() for r in node_records(captured)] == ["one", "two"]
    assert server.records_received(1) == 2
    warnings = server_warnings(captured)
    assert len(warnings) == 2 and bad_peer in warnings[0] and "no hello" in warnings[1]


def test_many_concurrent_jobs(server: LogServer, captured: pytest.LogCaptureFixture) -> None:
    socks = []
    try:
        for job_id in range(20):
            sock = connect(server)
            socks.append(sock)
            token = server.register_job(job_id, f"host{job_id}")
            sock.sendall(encode_frame(hello(job_id, token)))
        for job_id, sock in enumerate(socks):
            sock.sendall(b"".join(log_frame(msg=str(i)) for i in range(5)))
        for sock in socks:
            finish(sock)
    finally:
        for sock in socks:
            sock.close()
    assert [server.records_received(j) for j in range(20)] == [5] * 20
    assert {r.name for r in node_records(captured)} == {f"node.host{j}.{RECIPE}" for j in range(20)}


# --- waiting for a job's channel ---------------------------------------------------------------


def test_wait_returns_at_once_for_a_job_that_never_connected(server: LogServer) -> None:
    server.register_job(1, HOST)
    assert server.wait_job_closed(1, timeout=0) is False  # not exited yet
    server.job_exited(1)
    started = time.monotonic()
    assert server.wait_job_closed(1, timeout=5) is True
    assert time.monotonic() - started < 1


class RecordSignal(logging.Handler):
    """Sets an event when a record reaches the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.arrived.set()


@pytest.fixture
def first_record() -> Iterator[threading.Event]:
    """Set once a record of ``HOST`` is emitted: its connection's hello has been accepted."""
    signal = RecordSignal()
    node_logger = logging.getLogger(f"node.{HOST}")
    node_logger.addHandler(signal)
    try:
        yield signal.arrived
    finally:
        node_logger.removeHandler(signal)


def test_wait_covers_an_open_connection(
    server: LogServer, captured: pytest.LogCaptureFixture, first_record: threading.Event
) -> None:
    token = server.register_job(1, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame())
        assert first_record.wait(5)  # the hello was accepted: the connection is counted
        server.job_exited(1)
        assert server.wait_job_closed(1, timeout=0.05) is False
        sock.shutdown(socket.SHUT_WR)
        assert server.wait_job_closed(1, timeout=5) is True
        wait_for_server_close(sock)


def test_wait_on_unknown_or_forgotten_job(server: LogServer) -> None:
    with pytest.raises(KeyError):
        server.wait_job_closed(9, timeout=0)
    server.register_job(1, HOST)
    server.forget_job(1)
    with pytest.raises(KeyError):
        server.job_exited(1)


# --- forgetting a final job --------------------------------------------------------------------


def test_forget_is_safe_twice_and_for_an_unknown_job(server: LogServer) -> None:
    server.forget_job(7)  # never registered
    server.register_job(1, HOST)
    server.forget_job(1)
    server.forget_job(1)
    with pytest.raises(KeyError):
        server.records_received(1)


def test_forget_keeps_an_open_connection_and_refuses_new_ones(
    server: LogServer, captured: pytest.LogCaptureFixture, first_record: threading.Event
) -> None:
    token = server.register_job(1, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame(msg="first"))
        assert first_record.wait(5)  # admitted: the job's connection is open
        sock.sendall(b"".join(log_frame(msg=f"sent {i}") for i in range(50)))
        server.forget_job(1)  # the job is final while its records are still in flight
        server.forget_job(1)
        sock.sendall(log_frame(msg="last"))
        finish(sock)
    sent = ["first", *(f"sent {i}" for i in range(50)), "last"]
    assert [r.getMessage() for r in node_records(captured)] == sent
    assert server_warnings(captured) == []
    peer = send_and_wait(server, encode_frame(hello(1, token)) + log_frame(msg="late"))
    warnings = server_warnings(captured)
    assert len(warnings) == 1 and peer in warnings[0] and "unknown job 1" in warnings[0]
    assert len(node_records(captured)) == len(sent)


"""Connections the log receiver refuses (wrong or unknown token, junk, bad frames, silence),
each with one warning and no effect on the good connections; many jobs at once."""

from __future__ import annotations

import pickle
import struct
import time

import pytest

from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello
from tests.channel.logserver_helpers import (
    HOST,
    RECIPE,
    assert_one_warning,
    connect,
    finish,
    log_frame,
    node_records,
    peer_name,
    send_and_wait,
    server_warnings,
    wait_for_server_close,
)

# --- refused connections -----------------------------------------------------------------------



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

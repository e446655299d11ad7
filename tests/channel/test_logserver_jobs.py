"""A job's channel as the runner sees it: waiting until it is closed, forgetting a final
job's token while its records are still in flight."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello
from tests.channel.logserver_helpers import (
    HOST,
    RECIPE,
    connect,
    finish,
    log_frame,
    node_records,
    send_and_wait,
    server_warnings,
    wait_for_server_close,
)

# --- waiting for a job's channel ---------------------------------------------------------------


def test_wait_returns_at_once_for_a_job_that_never_connected(server: LogServer) -> None:
    server.register_job(1, HOST)
    assert server.wait_job_closed(1, timeout=0) is False  # not exited yet
    server.job_exited(1)
    started = time.monotonic()
    assert server.wait_job_closed(1, timeout=5) is True
    assert time.monotonic() - started < 1




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


def test_a_job_that_ends_unheard_is_forgotten_after_the_late_hello_time() -> None:
    """A run holds channel state for its running jobs and the last moment's ended ones, not
    for every job it ran (issue 17): an unheard job goes at the first end after its time."""
    with LogServer(recipe_name=RECIPE, late_hello_seconds=0) as server:
        for job_id in range(100):
            server.register_job(job_id, HOST)
            said_hello, forgotten = server.job_ended(job_id)
            assert (said_hello, forgotten) == (False, False)  # a hello may still come
        assert server.ended_jobs() == []  # the late-hello time is over for every one
        with pytest.raises(KeyError):
            server.bytes_received(0)


def test_a_late_hello_is_admitted_and_the_batch_end_waits_for_its_channel(
    server: LogServer, captured: pytest.LogCaptureFixture, first_record: threading.Event
) -> None:
    token = server.register_job(1, HOST)
    assert server.job_ended(1) == (False, False)  # ended before its node's hello came in
    assert server.ended_jobs() == [1]
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame(msg="late but welcome"))
        assert first_record.wait(5)
        assert server.ended_jobs() == [1]  # its channel is open: waited for
        assert server.wait_job_closed(1, timeout=0.05) is False
        finish(sock)
    assert server.wait_job_closed(1, timeout=5) is True
    assert [r.getMessage() for r in node_records(captured)] == ["late but welcome"]
    assert server_warnings(captured) == []


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


def test_said_hello_is_the_current_attempt_s(
    server: LogServer, captured: pytest.LogCaptureFixture, first_record: threading.Event
) -> None:
    token = server.register_job(1, HOST)
    assert server.said_hello(1) is False
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame())
        assert first_record.wait(5)  # a record comes after its hello was admitted
        assert server.said_hello(1) is True
        finish(sock)
    server.register_job(1, HOST)  # a retry: its node has not said hello yet
    assert server.said_hello(1) is False

"""The run's log receiver over real TCP sockets on 127.0.0.1: its lifecycle, and the records a
node sends, re-emitted under the host the job was registered for."""

from __future__ import annotations

import logging

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
    server_warnings,
    wait_for_server_close,
)

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
    tokens = {server.register_job(i, HOST) for i in range(600)}  # random bytes read 3 times
    tokens.add(server.register_job(0, HOST))  # a retry gets a new one
    assert len(tokens) == 601
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

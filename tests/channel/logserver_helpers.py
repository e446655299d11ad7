"""What the log receiver's tests share: a node's side of the socket, and what the master
logged. Every wait is on an observable event: the server closing our socket (it does so only
after it has handled all we sent, and after logging its warning)."""

from __future__ import annotations

import logging
import socket

import pytest

from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame

HOST = "lce001"
RECIPE = "example_parallel"


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



def assert_one_warning(caplog: pytest.LogCaptureFixture, peer: str, reason: str) -> None:
    warnings = server_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert peer in warnings[0] and reason in warnings[0], warnings[0]
    assert node_records(caplog) == []


"""Fixtures of the channel tests: a started log server, the master's log, a node's first record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from lofarexec.channel.logserver import LogServer
from tests.channel.logserver_helpers import HOST, RECIPE


@pytest.fixture
def server() -> Iterator[LogServer]:
    with LogServer(hello_timeout=0.3, recipe_name=RECIPE) as log_server:
        yield log_server


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


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

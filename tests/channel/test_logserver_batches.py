"""The receiver's fast path (issue 17): records made from a template and written in batches must
give the same log text, in the same order, as one ``Logger.handle`` per record did; a raising
master-side filter drops only its sender; records never wait behind a reply or a close."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest

from lofarexec.channel.emitter import BatchEmitter
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    decode_body,
    encode_frame,
    hello,
    parse_log_record,
)
from lofarexec.channel.records import RecordMaker, reemit
from lofarexec.errors import ProtocolError
from lofarexec.recipe import DATE_FORMAT, LOG_FORMAT
from tests.channel.logserver_helpers import (
    HOST,
    RECIPE,
    connect,
    finish,
    log_frame,
    node_records,
    server_warnings,
)


class _Sink(logging.Handler):
    """Keeps what reaches it (a handler of another kind: served record by record)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stream_handler() -> Iterator[tuple[logging.StreamHandler[io.StringIO], io.StringIO]]:
    """A plain StreamHandler on the node loggers, with the run's format: written in batches."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter(LOG_FORMAT + " [%(lofarexec_job_id)s]", DATE_FORMAT))
    node_logger = logging.getLogger("node")
    node_logger.addHandler(handler)
    old_level = node_logger.level
    node_logger.setLevel(logging.DEBUG)
    try:
        yield handler, text
    finally:
        node_logger.removeHandler(handler)
        node_logger.setLevel(old_level)


def _fields(index: int) -> dict[str, Any]:
    """Varied records: levels, names, tracebacks, times on and off a millisecond."""
    return {
        "name": [f"node.{HOST}.Task", "node.other.x", "lofarexec.recipe", f"node.{HOST}.a.b"][
            index % 4],
        "levelno": [logging.DEBUG, logging.INFO, logging.WARNING, 35][index % 4],
        "msg": f"record {index} with 100% and %s",
        "created": 1288271658.25 + index * 0.0137,
        "exc_text": "Traceback (most recent call last):\nValueError: x" if index % 7 == 0 else None,
    }


def _run(server: LogServer, job_id: int, frames: list[bytes]) -> None:
    token = server.register_job(job_id, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(job_id, token)) + b"".join(frames))
        finish(sock)
    server.job_exited(job_id)
    assert server.wait_job_closed(job_id, timeout=5)


def test_the_text_written_is_record_for_record_what_logger_handle_wrote(
    server: LogServer,
    stream_handler: tuple[logging.StreamHandler[io.StringIO], io.StringIO],
) -> None:
    handler, text = stream_handler
    count = 2500  # more than one batch (the emitter's limit is 1,024)
    _run(server, 4, [log_frame(**_fields(index)) for index in range(count)])
    assert server.records_received(4) == count
    got = text.getvalue()
    text.seek(0)
    text.truncate()
    for index in range(count):  # the old path: one Logger.handle per record
        reemit(parse_log_record(decode_body(log_frame(**_fields(index))[4:])), host=HOST,
               job_id=4, recipe_name=RECIPE)
    expected = text.getvalue()
    assert got == expected
    assert len(got.splitlines()) > count  # the tracebacks' lines too


def test_a_made_record_equals_the_one_reemit_made() -> None:
    sink = _Sink()
    target = logging.getLogger(f"node.{HOST}.Task")
    target.addHandler(sink)
    old_level = target.level
    target.setLevel(logging.DEBUG)
    target.propagate = False  # no formatting handler adds message/asctime to the old record
    try:
        fields = _fields(7)
        fields["name"] = f"node.{HOST}.Task"
        reemit(fields, host=HOST, job_id=9, recipe_name=RECIPE)
        made = RecordMaker(host=HOST, job_id=9, recipe_name=RECIPE).make(fields)
    finally:
        target.removeHandler(sink)
        target.setLevel(old_level)
        target.propagate = True
    assert made is not None and made[0] is target
    old, new = vars(sink.records[0]), vars(made[1])
    assert old.keys() == new.keys()
    assert math.isclose(old.pop("relativeCreated"), new.pop("relativeCreated"), abs_tol=1000)
    assert old == new
    assert made[1].getMessage() == fields["msg"]


def test_records_of_other_handlers_arrive_in_order_across_batches(server: LogServer) -> None:
    sink = _Sink()
    node_logger = logging.getLogger(f"node.{HOST}")
    node_logger.addHandler(sink)
    old_level = node_logger.level
    node_logger.setLevel(logging.DEBUG)
    try:
        _run(server, 2, [log_frame(msg=f"m{index}") for index in range(3000)])
    finally:
        node_logger.removeHandler(sink)
        node_logger.setLevel(old_level)
    assert [record.msg for record in sink.records] == [f"m{index}" for index in range(3000)]


class _Refusing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "poison":
            raise RuntimeError("filter broke")
        return True


def test_a_raising_master_filter_drops_its_sender_only(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    target = logging.getLogger(f"node.{HOST}.{RECIPE}")
    refusing = _Refusing()
    target.addFilter(refusing)
    try:
        bad, good = server.register_job(1, HOST), server.register_job(2, HOST)
        with connect(server) as first, connect(server) as second:
            first.sendall(encode_frame(hello(1, bad)) + log_frame(msg="before")
                          + log_frame(msg="poison") + log_frame(msg="after"))
            second.sendall(encode_frame(hello(2, good)) + log_frame(msg="fine"))
            finish(first)
            finish(second)
    finally:
        target.removeFilter(refusing)
    messages = [record.msg for record in node_records(captured)]
    assert "before" in messages and "fine" in messages
    assert "poison" not in messages and "after" not in messages
    warnings = server_warnings(captured)
    assert len(warnings) == 1 and "job 1" in warnings[0] and "filter broke" in warnings[0]


def test_good_records_come_before_the_warning_that_closes_their_connection(
    server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    token = server.register_job(1, HOST)
    with connect(server) as sock:
        sock.sendall(encode_frame(hello(1, token)) + log_frame(msg="good")
                     + encode_frame({"type": "hello", "job_id": 1, "token": token}))
        finish(sock)
    order = [(r.name, r.getMessage()) for r in captured.records
             if r.name.startswith("node.") or r.levelno == logging.WARNING]
    assert order[0] == (f"node.{HOST}.{RECIPE}", "good")
    assert "second hello" in order[-1][1]


def test_the_batch_holds_a_bounded_number_of_records() -> None:
    written: list[int] = []

    class Counting(logging.StreamHandler):  # type: ignore[type-arg]
        def flush(self) -> None:
            written.append(len(self.stream.getvalue().splitlines()))

    handler = Counting(io.StringIO())
    target = logging.getLogger("tests.channel.batches")
    target.addHandler(handler)
    target.propagate = False

    class Owner:
        closed = False

    try:
        emitter = BatchEmitter(lambda owner, exc: None, limit=10)
        for index in range(25):
            emitter.add(target, logging.makeLogRecord({"msg": str(index), "levelno": 20}), Owner())
        assert written == [10, 20]  # flushed at the limit, one write each
        emitter.flush()
        assert written == [10, 20, 25]
        emitter.flush()  # nothing kept: nothing written
        assert written == [10, 20, 25]
    finally:
        target.removeHandler(handler)
        target.propagate = True


@pytest.mark.parametrize("message", [
    {"name": "n", "levelno": 0, "msg": "m", "created": 1.0, "exc_text": None},
    {"name": "n", "levelno": 51, "msg": "m", "created": 1.0, "exc_text": None},
    {"name": "n", "levelno": 20, "msg": "m", "created": -1.0, "exc_text": None},
    {"name": "n", "levelno": 20, "msg": "m", "created": 2e11, "exc_text": None},
    {"name": "n", "levelno": 20, "msg": "m", "created": 5, "exc_text": None},
    {"name": "n" * (MAX_NAME_CHARS + 1), "levelno": 20, "msg": "m", "created": 1.0,
     "exc_text": None},
    {"name": "n", "levelno": 20, "msg": "m" * (MAX_TEXT_CHARS + 1), "created": 1.0,
     "exc_text": None},
    {"name": "n", "levelno": 20, "msg": "m", "created": 1.0, "exc_text": ""},
    {"name": "n", "levelno": 20, "msg": "m", "created": 1.0, "exc_text": "tb"},
    {"name": "n", "levelno": True, "msg": "m", "created": 1.0, "exc_text": None},
])
def test_records_at_the_bounds_are_checked_as_ever(message: dict[str, Any]) -> None:
    """The fast path takes only records already within bounds: the rest are clamped/cut."""
    frame = {"type": "log", **message}
    try:
        fields = parse_log_record(decode_body(encode_frame(frame)[4:]))
    except ProtocolError:  # a refusal is fine (a bool level, say)
        return
    assert 1 <= fields["levelno"] <= logging.CRITICAL
    assert 0.0 <= fields["created"] <= 1e11 and type(fields["created"]) is float
    assert len(fields["name"]) <= MAX_NAME_CHARS and len(fields["msg"]) <= MAX_TEXT_CHARS
    assert fields["exc_text"] is None or fields["exc_text"] == "tb"


@pytest.mark.parametrize("body", [b' {"v":1,"type":"x"}', b'{"v":1,"type":"x"}\n\t '])
def test_json_around_whitespace_is_still_accepted(body: bytes) -> None:
    assert decode_body(body) == {"v": 1, "type": "x"}


@pytest.mark.parametrize("body", [b'{"v":1,"type":"x"} {}', b'{"v":1,"type":"x"},{}',
                                  b'{"v":1,"type":"x","n":NaN}', b'{"v":1,"type":"x"'])
def test_more_or_less_than_one_value_is_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_body(body)

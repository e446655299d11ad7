"""The job-channel wire format: frames, the incremental decoder and the message checkers."""

from __future__ import annotations

import io
import json
import logging
import pickle
import socket
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lofarexec.channel.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_TEXT_CHARS,
    NODE_UNREACHED,
    PROTOCOL_VERSION,
    FrameDecoder,
    decode_body,
    encode_frame,
    find_unreached,
    hello,
    log_record,
    parse_hello,
    parse_log_record,
    read_frame,
)
from lofarexec.errors import ProtocolError


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def json_frame(obj: object) -> bytes:
    return raw_frame(json.dumps(obj).encode())


def test_constants() -> None:
    assert PROTOCOL_VERSION == 1
    assert DEFAULT_MAX_FRAME_BYTES == 1 << 20


def test_encode_frame_layout() -> None:
    frame = encode_frame({"type": "ping", "x": "é"})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:].decode("utf-8")) == {"v": 1, "type": "ping", "x": "é"}


@pytest.mark.parametrize(
    "message",
    [
        {"x": 1},
        {"type": 3},
        {"type": "t", "v": 2},
        {"type": "t", "v": True},
        {"type": "t", "o": {1j}},
    ],
)
def test_encode_frame_refuses_bad_messages(message: dict) -> None:
    with pytest.raises(ProtocolError):
        encode_frame(message)


def test_encode_frame_refuses_oversized() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frame({"type": "t", "x": "a" * 100}, max_bytes=50)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(database=None, deadline=None)
@given(
    payload=st.dictionaries(st.text().filter(lambda k: k not in ("v", "type")), json_values),
    cut=st.integers(min_value=1, max_value=7),
)
def test_decoder_round_trip_in_any_pieces(payload: dict, cut: int) -> None:
    messages = [{"type": "a", **payload}, {"type": "b"}]
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    received = []
    for start in range(0, len(stream), cut):
        received += decoder.feed(stream[start : start + cut])
    assert received == [{"v": 1, **m} for m in messages]
    assert decoder.buffered == 0


def test_decoder_many_frames_in_one_chunk() -> None:
    stream = b"".join(encode_frame({"type": "n", "i": i}) for i in range(100))
    assert [m["i"] for m in FrameDecoder().feed(stream)] == list(range(100))


def test_giant_length_header_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="4294967295 bytes exceeds"):
        decoder.feed(b"\xff\xff\xff\xff")
    assert decoder.buffered == 0


def test_length_just_over_the_cap_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder(max_bytes=10).feed(struct.pack(">I", 11))


def test_raw_pickle_is_refused_by_its_header() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().feed(pickle.dumps({"type": "log"}))


def test_framed_pickle_is_refused_as_not_json() -> None:
    body = pickle.dumps({"v": 1, "type": "log"}, protocol=0)  # protocol 0 is ASCII
    with pytest.raises(ProtocolError, match="not JSON"):
        FrameDecoder().feed(raw_frame(body))
    with pytest.raises(ProtocolError, match="not UTF-8"):
        FrameDecoder().feed(raw_frame(pickle.dumps({"v": 1})))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (b'{"type": "log"}', "version"),
        (b'{"v": 2, "type": "log"}', "version"),
        (b'{"v": true, "type": "log"}', "version"),
        (b'{"v": "1", "type": "log"}', "version"),
        (b'{"v": 1}', "no message type"),
        (b'{"v": 1, "type": ""}', "no message type"),
        (b'{"v": 1, "type": "log", "created": NaN}', "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"v": 1, "type": "t", "n": ' + b"9" * 5000 + b"}", "not JSON"),
    ],
)
def test_bad_bodies_refused(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_body(body)
    with pytest.raises(ProtocolError, match=reason):
        FrameDecoder().feed(raw_frame(body))


def test_decoder_is_spent_after_an_error() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(raw_frame(b"junk"))
    with pytest.raises(ProtocolError, match="after a protocol error"):
        decoder.feed(encode_frame({"type": "fine"}))


def test_feed_iter_yields_good_frames_before_the_bad_one() -> None:
    stream = encode_frame({"type": "good"}) + raw_frame(b"junk")
    received: list[dict] = []
    with pytest.raises(ProtocolError):
        received.extend(FrameDecoder().feed_iter(stream))
    assert received == [{"v": 1, "type": "good"}]


def test_read_frame_from_a_file_and_a_socket() -> None:
    stream = encode_frame({"type": "a"}) + encode_frame({"type": "b"})
    source = io.BytesIO(stream)
    assert read_frame(source)["type"] == "a"
    assert read_frame(source)["type"] == "b"
    with pytest.raises(EOFError):
        read_frame(source)
    left, right = socket.socketpair()
    with left, right:
        left.sendall(stream[:3])
        left.sendall(stream[3:])
        left.shutdown(socket.SHUT_WR)
        assert [read_frame(right)["type"], read_frame(right)["type"]] == ["a", "b"]
        with pytest.raises(EOFError):
            read_frame(right)


@pytest.mark.parametrize(
    "stream",
    [b"\x00\x00", struct.pack(">I", 10) + b"{}", b"\xff\xff\xff\xff", raw_frame(b"[]")],
)
def test_read_frame_refuses_cut_or_bad_frames(stream: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO(stream))


def test_hello_round_trip() -> None:
    message = FrameDecoder().feed(encode_frame(hello(7, "abc")))[0]
    assert parse_hello(message) == (7, "abc")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "log", "job_id": 1, "token": "t"},
        {"type": "hello", "job_id": "1", "token": "t"},
        {"type": "hello", "job_id": True, "token": "t"},
        {"type": "hello", "job_id": 1.0, "token": "t"},
        {"type": "hello", "job_id": 1, "token": 5},
        {"type": "hello", "job_id": 1},
    ],
)
def test_parse_hello_refuses(message: dict) -> None:
    with pytest.raises(ProtocolError):
        parse_hello(message)


def make_record(
    msg: str = "hello %s", args: tuple = ("world",), **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("node.h.X", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_log_record_fields() -> None:
    record = make_record()
    message = log_record(record)
    assert message == {
        "v": 1,
        "type": "log",
        "name": "node.h.X",
        "levelno": logging.WARNING,
        "levelname": "WARNING",
        "msg": "hello world",
        "created": record.created,
        "exc_text": None,
    }
    assert parse_log_record(decode_body(encode_frame(message)[4:])) == {
        "name": "node.h.X",
        "levelno": logging.WARNING,
        "msg": "hello world",
        "created": record.created,
        "exc_text": None,
    }


def test_log_record_carries_the_traceback() -> None:
    try:
        raise ValueError("kaboom")
    except ValueError:
        record = make_record(exc_info=sys.exc_info())
    exc_text = log_record(record)["exc_text"]
    assert exc_text.startswith("Traceback") and "ValueError: kaboom" in exc_text


def test_log_record_caps_long_messages() -> None:
    message = log_record(make_record("x" * (MAX_TEXT_CHARS * 3), ()))
    assert len(message["msg"]) == MAX_TEXT_CHARS
    assert message["msg"].endswith("[... truncated]")
    assert len(encode_frame(message)) < DEFAULT_MAX_FRAME_BYTES


def good_log(**override: object) -> dict:
    fields = {
        "type": "log",
        "name": "n",
        "levelno": 20,
        "msg": "m",
        "created": 1.5,
        "exc_text": None,
    }
    return {**fields, **override}


@pytest.mark.parametrize(
    "override",
    [
        {"type": "hello"},
        {"name": 3},
        {"levelno": "20"},
        {"levelno": 20.0},
        {"levelno": True},
        {"msg": None},
        {"msg": ["a"]},
        {"created": "now"},
        {"created": float("inf")},
        {"created": None},
        {"exc_text": 1},
    ],
)
def test_parse_log_record_refuses_bad_types(override: dict) -> None:
    with pytest.raises(ProtocolError):
        parse_log_record(good_log(**override))


def test_parse_log_record_clamps_and_drops_extras() -> None:
    fields = parse_log_record(
        good_log(levelno=10**9, created=1e300, msg="y" * 10**6, args=["x"], extra="drop")
    )
    assert fields["levelno"] == logging.CRITICAL
    assert fields["created"] == 1e11
    assert len(fields["msg"]) == MAX_TEXT_CHARS
    assert set(fields) == {"name", "levelno", "msg", "created", "exc_text"}
    assert parse_log_record(good_log(levelno=-5, created=-1))["levelno"] == 1


COMPLAINT = ("lofarexec.node: cannot reach the log server at head:4000 ([Errno 111] Connection "
             "refused); logging to stderr")
FINAL = "lofarexec.node: " + NODE_UNREACHED.format(address="head:4000")


@pytest.mark.parametrize(("errors", "found"), [
    (f"{COMPLAINT}\nrecord\n{FINAL}\n", ("head:4000", "[Errno 111] Connection refused")),
    ("record\n" * 10 + f"{FINAL}\nprinted after the session\n", ("head:4000", None)),  # cut
    (f"{COMPLAINT}\nrecord\n", ("head:4000", "[Errno 111] Connection refused")),  # killed
    ("record\nlofarexec.node: lost the log channel to head:4000 (reset); logging to stderr\n",
     None),
    ("a plain program's stderr\n", None),
    ("", None),
])
def test_a_node_that_never_reached_its_log_server_is_found_in_its_stderr(errors, found):
    assert find_unreached(errors) == found

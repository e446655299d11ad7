"""Fuzzing the wire formats: the job channel's frames and the host agent's frames.

The job channel (node -> master) is checked against :func:`reference_channel`, a reading of the
documented format (4-byte big-endian length, UTF-8 JSON object of our version with a ``type``)
written apart from :mod:`lofarexec.channel.protocol`: the blocking reader and the incremental
decoder, fed in arbitrary pieces, must give the same messages and refuse the same frame, with
:class:`~lofarexec.errors.ProtocolError` only. The agent's frames (agent -> control node) must
cut into what the documented format says, whatever the pieces; a frame's content reaches its
job, or fails it, without any exception.
"""

from __future__ import annotations

import io
import json
import logging
import struct
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lofarexec.backend import Outcome
from lofarexec.channel.protocol import (
    FrameDecoder,
    decode_body,
    encode_frame,
    hello,
    log_record,
    parse_hello,
    parse_log_record,
    read_frame,
)
from lofarexec.errors import BackendError, ProtocolError
from lofarexec.transport.agent import AgentJob
from lofarexec.transport.agent_frames import FrameReader, take_frame
from tests.fuzz import FUZZ

MAX = 96  # a small frame cap, so that the cap is met often


# -- strategies --------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "log", "", "x"]) | json_values},
    optional={"v": st.sampled_from([1, True, 1.0, 2, "1"]), "job_id": json_values,
              "token": json_values, "name": json_values, "levelno": json_values,
              "msg": json_values, "created": json_values, "exc_text": json_values})

huge = st.integers(-(10**400), 10**400) | st.sampled_from([10**309, -(10**309), 2**63])
#: Nearly valid hello and log messages: every field of the right kind but one, often.
hellos = st.fixed_dictionaries({"type": st.just("hello"), "job_id": st.integers() | huge
                                | json_values, "token": st.text(max_size=5) | json_values})
logs = st.fixed_dictionaries(
    {"type": st.just("log"), "name": st.text(max_size=5) | json_values,
     "levelno": st.integers() | huge | json_values, "msg": st.text(max_size=5) | json_values,
     "created": st.floats() | huge | json_values},
    optional={"exc_text": st.none() | st.text(max_size=5) | json_values})
messages = messages | hellos | logs


def frame_of(body: bytes, length: int | None = None) -> bytes:
    return struct.pack(">I", len(body) if length is None else length) + body


bodies = (messages.map(lambda m: json.dumps({"v": 1, **m}).encode())
          | json_values.map(lambda v: json.dumps(v).encode())
          | st.sampled_from([b'{"v":1,"type":"log","created":NaN}', b'{"v":1,"type":Infinity}',
                             b'{"v":1,"type":"a"}', b"[" * 3000, b'"\xff"', b"", b"{}",
                             b'{"v":1,"type":"a","n":' + b"9" * 5000 + b"}"])
          | st.binary(max_size=12))
frames = bodies.map(frame_of) | st.builds(frame_of, bodies, st.integers(0, 2**32 - 1))
streams = st.lists(frames, max_size=4).map(b"".join) | st.binary(max_size=40)


@st.composite
def pieces(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary places, as a socket may deliver it."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- the job channel: a reference reading ------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(name)


def reference_body(body: bytes) -> dict[str, Any] | None:
    """The message a body holds, or None when the format refuses it."""
    try:
        message = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("v") != 1 or type(message["v"]) is not int:
        return None
    if not isinstance(message.get("type"), str) or not message["type"]:
        return None
    return message


def reference_channel(data: bytes, max_bytes: int) -> tuple[list[dict[str, Any]], str]:
    """The messages ``data`` holds, and how it ends: ``end``, ``cut`` (inside a frame) or
    ``refused`` (at a frame the format refuses)."""
    found: list[dict[str, Any]] = []
    position = 0
    while position < len(data):
        if len(data) - position < 4:
            return found, "cut"
        length = int.from_bytes(data[position:position + 4], "big")
        if length > max_bytes:
            return found, "refused"
        if len(data) - position - 4 < length:
            return found, "cut"
        message = reference_body(data[position + 4:position + 4 + length])
        if message is None:
            return found, "refused"
        found.append(message)
        position += 4 + length
    return found, "end"


def read_all(data: bytes, max_bytes: int) -> tuple[list[dict[str, Any]], str]:
    """:func:`read_frame` until the stream ends or a frame is refused."""
    source, found = io.BytesIO(data), []
    while True:
        try:
            found.append(read_frame(source, max_bytes))
        except EOFError:
            return found, "end"
        except ProtocolError as exc:
            return found, "cut" if str(exc).startswith("channel closed") else "refused"


# -- the job channel ---------------------------------------------------------------------------
@FUZZ
@given(streams, st.sampled_from([MAX, 1 << 20]))
def test_the_blocking_reader_reads_what_the_format_says(data, max_bytes):
    assert read_all(data, max_bytes) == reference_channel(data, max_bytes)


@FUZZ
@given(st.data(), streams, st.sampled_from([MAX, 1 << 20]))
def test_the_decoder_reads_the_same_whatever_the_pieces(data, stream, max_bytes):
    expected, end = reference_channel(stream, max_bytes)
    decoder, found, refused = FrameDecoder(max_bytes), [], False
    for piece in data.draw(pieces(stream)):
        try:
            found.extend(decoder.feed_iter(piece))
        except ProtocolError:
            refused = True
            break
    assert found == expected
    assert refused == (end == "refused")
    if refused:  # spent: nothing after a bad frame is trusted
        try:
            decoder.feed(frame_of(b'{"v":1,"type":"log"}'))
        except ProtocolError:
            pass
        else:
            raise AssertionError("the decoder took a frame after refusing one")
    else:
        assert (decoder.buffered > 0) == (end == "cut")


@FUZZ
@given(bodies)
def test_a_body_is_a_message_or_our_error(body):
    try:
        message = decode_body(body)
    except ProtocolError:
        assert reference_body(body) is None
    else:
        assert message == reference_body(body)


@FUZZ
@given(messages)
@example(message={"type": "log", "name": "", "levelno": 0, "msg": "", "created": 10**400})
def test_hello_and_log_fields_are_checked_or_our_error(message):
    message = {"v": 1, **message}
    for parse in (parse_hello, parse_log_record):
        try:
            parsed = parse(message)
        except ProtocolError:
            continue
        if parse is parse_hello:
            job_id, token = parsed
            assert type(job_id) is int and isinstance(token, str)
        else:
            assert isinstance(parsed["name"], str) and isinstance(parsed["msg"], str)
            assert 1 <= parsed["levelno"] <= logging.CRITICAL
            assert 0.0 <= parsed["created"] <= 1e11


@FUZZ
@given(st.text(max_size=30), st.integers(), st.text(max_size=30), st.integers(0, 2**31))
def test_what_a_node_sends_reads_back(name, level, text, job_id):
    record = logging.LogRecord(name, level, __file__, 1, text, None, None)
    stream = encode_frame(hello(job_id, text)) + encode_frame(log_record(record))
    (first, second), end = read_all(stream, 1 << 20)
    assert end == "end"
    assert parse_hello(first) == (job_id, text)
    fields = parse_log_record(second)
    assert (fields["name"], fields["msg"]) == (name, text)


# -- the host agent's frames -------------------------------------------------------------------
AGENT_KINDS = [b"H", b"P", b"O", b"E", b"F", b"X", b"S", b"N", b"\0", b"\xff"]
agent_payloads = (st.binary(max_size=10) | st.integers().map(lambda n: str(n).encode())
                  | st.sampled_from([b"1", b"0", b"-1", b"-9", b" 7\n", b"1_0", b"9" * 5000,
                                     "\u0665".encode(), b"\xff\xfe"]))
agent_frames = st.builds(lambda kind, number, payload: struct.pack("!cII", kind, number,
                                                                    len(payload)) + payload,
                         st.sampled_from(AGENT_KINDS), st.integers(0, 2**32 - 1), agent_payloads)
agent_hello = struct.pack("!cII", b"H", 0, 1) + b"1"
agent_streams = (st.lists(agent_frames, max_size=5).map(lambda frames: agent_hello
                                                        + b"".join(frames))
                 | st.lists(agent_frames, max_size=5).map(b"".join) | st.binary(max_size=40))


def reference_agent(data: bytes) -> tuple[list[tuple[bytes, int, bytes]], bool] | None:
    """The agent's frames in ``data`` (hello and pings left out), and whether a hello came;
    None for a stream that cannot be the agent's (not starting with its hello, or a frame
    longer than 1 MiB)."""
    if not data.startswith(b"H\0\0\0\0"[:len(data)]):
        return None
    found, said_hello, position = [], False, 0
    while len(data) - position >= 9:
        kind = data[position:position + 1]
        number = int.from_bytes(data[position + 1:position + 5], "big")
        length = int.from_bytes(data[position + 5:position + 9], "big")
        if length > 1 << 20:
            return None
        if len(data) - position - 9 < length:
            break
        if kind == b"H":
            said_hello = True
        elif kind != b"N":
            found.append((kind, number, data[position + 9:position + 9 + length]))
        position += 9 + length
    return found, said_hello


@FUZZ
@given(st.data(), agent_streams)
def test_the_agents_output_cuts_into_its_frames_whatever_the_pieces(data, stream):
    reader, found, expected = FrameReader(), [], reference_agent(stream)
    if expected is None:
        with pytest.raises(BackendError):
            for piece in data.draw(pieces(stream)):
                reader.feed(piece)
        return
    for piece in data.draw(pieces(stream)):
        found.extend(reader.feed(piece))
    assert (found, reader.hello) == expected


@FUZZ
@given(st.sampled_from(AGENT_KINDS), agent_payloads)
@example(kind=b"X", payload=b"")  # was a ValueError in the thread serving the host
@example(kind=b"P", payload=b"x")
@example(kind=b"P", payload=b"1")  # "kill -- -1" would be every process of the user
def test_an_agent_frame_reaches_its_job_or_fails_it_never_raises(kind, payload):
    reports: list[Outcome] = []
    job = AgentJob(1, "node01", reports.append)
    outcome = take_frame(job, kind, payload)
    assert outcome is None or isinstance(outcome, Outcome)
    assert job.pid == 0 or job.pid > 1  # never a pid whose group would be "every process"
    if kind == b"X" and outcome is not None and outcome.transport_error is None:
        assert outcome.returncode == int(payload)
    if kind == b"O":
        assert bytes(job.output) == payload

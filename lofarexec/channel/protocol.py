"""The wire format of the job channel between a node script and its run's :class:`LogServer`.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON. The JSON
is always an object carrying ``"v"`` (:data:`PROTOCOL_VERSION`) and ``"type"``::

    +----------------+-------------------------------------------------+
    | length (>I, 4) | {"v": 1, "type": "log", "name": ..., ...}  UTF-8  |
    +----------------+-------------------------------------------------+

A connection opens with one ``hello`` frame (job id and the job's secret token), then carries
``log`` frames. Nothing here pickles or evaluates what it receives: a frame is JSON or it is
refused with :class:`~lofarexec.errors.ProtocolError`, and a length above the cap is refused from
its 4-byte header, before any buffer for the body exists.

This module is imported on compute nodes, so it uses the standard library and
:mod:`lofarexec.errors` only.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import struct
from collections.abc import Iterator

from lofarexec.errors import ProtocolError

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms in every node (issue 17)
if TYPE_CHECKING:
    from typing import Any, BinaryIO

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: Longest message or traceback text a ``log`` frame carries; longer text is cut on both sides.
MAX_TEXT_CHARS = 64 * 1024
#: Longest logger name a ``log`` frame carries.
MAX_NAME_CHARS = 200

MSG_HELLO = "hello"
MSG_LOG = "log"

#: The job's id as the master numbered it (decimal).
ENV_JOB_ID = "LOFAREXEC_JOB_ID"
#: The job's secret token, when it travels in the environment.
ENV_TOKEN = "LOFAREXEC_TOKEN"
#: When ``"1"``, the token is the first line of the node's standard input: for a transport
#: that can hand a node a stdin but no environment of its own. (The built-in remote transports
#: set the environment through the launch wrapper instead, which reads it from stdin.)
ENV_TOKEN_STDIN = "LOFAREXEC_TOKEN_STDIN"
#: The job's host name as the recipe named it; the node logs as ``node.<this>.<ClassName>``.
ENV_HOST = "LOFAREXEC_HOST"
#: The run's job directory; a job's own folder is ``jobs/<id>`` in it.
ENV_JOB_DIRECTORY = "LOFAREXEC_JOB_DIRECTORY"
#: How the node was given its arguments: ``stored`` (argv is job id, log host, log port) or
#: ``command_line`` (log host, log port, arguments); a node of the other kind stops at once.
ENV_NODE_ARGUMENTS = "LOFAREXEC_NODE_ARGUMENTS"
#: The run's marker (hexadecimal), the same for every node of one ``_schedule_jobs`` call and
#: inherited by all they start: the end-of-run audit (:mod:`lofarexec.run.audit`) finds what a
#: run left on a host by it.
ENV_RUN = "LOFAREXEC_RUN"

#: The last line (after ``lofarexec.node: ``) a node writes on standard error when it was given
#: a job channel but never reached the log server, so its records went to stderr instead: the
#: runner finds it in the job's stderr tail (:func:`find_unreached`) and the job's results say so.
NODE_UNREACHED = "never reached the log server at {address}; its log records went to stderr"
_NODE_LINE_PREFIX = "lofarexec.node: "

_HEADER = struct.Struct(">I")
_TRUNCATED = " [... truncated]"


def _short(value: Any) -> str:
    """A bounded repr of a peer-supplied value, safe to put in a warning."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every frame: ``json.loads`` with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_scan_value = _DECODER.scan_once


def encode_frame(message: dict[str, Any], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Serialise one message into a frame; adds ``"v"`` when the message lacks it.

    Raises :class:`ProtocolError` for a message without a string ``type``, one that is not
    JSON-serialisable, or one whose encoding exceeds ``max_bytes`` (the peer would refuse it).
    """
    if not isinstance(message.get("type"), str):
        raise ProtocolError(f"message has no string 'type': {_short(message.get('type'))}")
    body_obj = {"v": PROTOCOL_VERSION, **message}
    if type(body_obj["v"]) is not int or body_obj["v"] != PROTOCOL_VERSION:
        raise ProtocolError(f"cannot encode protocol version {_short(body_obj['v'])}")
    try:
        body = json.dumps(body_obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"message is not JSON-serialisable: {exc}") from exc
    data = body.encode("utf-8")
    if len(data) > max_bytes:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    return _HEADER.pack(len(data)) + data


def _parse_json(text: str) -> Any:
    """The JSON value ``text`` holds: one scan of the shared decoder when the text is exactly
    one value (what our encoder writes), else ``json.loads``'s verdict and error messages."""
    try:
        value, end = _scan_value(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and over-long integers; RecursionError deep nesting.
        raise ProtocolError(f"frame is not JSON: {str(exc)[:80]}") from exc


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    """Parse and check one frame body: a UTF-8 JSON object of our version with a ``type``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"frame is not UTF-8 (bad byte at offset {exc.start})") from exc
    message = _parse_json(text)
    if not isinstance(message, dict):
        raise ProtocolError(f"frame is JSON {type(message).__name__}, not an object")
    version = message.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {_short(version)} (expected {PROTOCOL_VERSION})"
        )
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(f"frame has no message type: {_short(kind)}")
    return message


def _check_length(length: int, max_bytes: int) -> None:
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_bytes}-byte limit")


def _read_exactly(source: socket.socket | BinaryIO, count: int) -> bytes:
    """Read ``count`` bytes, fewer only at end of stream."""
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        if isinstance(source, socket.socket):
            chunk = source.recv(min(remaining, 1 << 16))
        else:
            chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(
    source: socket.socket | BinaryIO, max_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> dict[str, Any]:
    """Block until one whole frame has arrived on ``source`` (a socket or binary file); return it.

    For the node side, where one blocking reader is simplest. Raises :class:`EOFError` when the
    stream ends cleanly before a frame starts, :class:`ProtocolError` for a frame cut short or
    refused by :func:`decode_body` or the size cap.
    """
    header = _read_exactly(source, _HEADER.size)
    if not header:
        raise EOFError("channel closed")
    if len(header) < _HEADER.size:
        raise ProtocolError("channel closed inside a frame header")
    (length,) = _HEADER.unpack(header)
    _check_length(length, max_bytes)
    body = _read_exactly(source, length)
    if len(body) < length:
        raise ProtocolError(f"channel closed after {len(body)} of {length} frame bytes")
    return decode_body(body)


class FrameDecoder:
    """Turns a byte stream arriving in arbitrary pieces into messages; for non-blocking readers.

    After it has raised once the decoder is spent: every later call raises too, so nothing after
    a bad frame is ever trusted.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame (non-zero at EOF: a cut frame)."""
        return len(self._buffer)

    def pending(self) -> bytes:
        """The bytes received but not yet part of a whole frame."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return every message it completes. Raises :class:`ProtocolError`."""
        return list(self.feed_iter(data))

    def feed_iter(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Like :meth:`feed`, but yields each message as it is decoded.

        So a reader can act on the good frames that precede a bad one in the same chunk before the
        error is raised. ``data`` is taken when iteration starts: iterate the result.
        """
        if self._error is not None:
            raise ProtocolError(f"data after a protocol error ({self._error})")
        self._buffer += data
        try:
            yield from self._drain()
        except ProtocolError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise

    def _drain(self) -> Iterator[dict[str, Any]]:
        start = 0
        buffer, unpack_from, header_size = self._buffer, _HEADER.unpack_from, _HEADER.size
        size = len(buffer)
        try:
            while size - start >= header_size:
                (length,) = unpack_from(buffer, start)
                if length > self.max_bytes:
                    _check_length(length, self.max_bytes)
                end = start + header_size + length
                if size < end:
                    break
                body = buffer[start + header_size : end]
                start = end
                yield decode_body(body)
        finally:
            del buffer[:start]


def count_frames(data: bytes | bytearray) -> int:
    """How many whole frames ``data`` starts with, from their headers only (nothing decoded)."""
    start = count = 0
    while len(data) - start >= _HEADER.size:
        (length,) = _HEADER.unpack_from(data, start)
        start += _HEADER.size + length
        if start > len(data):
            break
        count += 1
    return count


# --- messages -------------------------------------------------------------------------------


def hello(job_id: int, token: str) -> dict[str, Any]:
    """The first message of every connection: which job this is, and its secret token."""
    return {"v": PROTOCOL_VERSION, "type": MSG_HELLO, "job_id": job_id, "token": token}


def parse_hello(message: dict[str, Any]) -> tuple[int, str]:
    """Check a decoded ``hello`` message; return ``(job_id, token)``."""
    if message.get("type") != MSG_HELLO:
        raise ProtocolError(f"expected a hello frame, got {_short(message.get('type'))}")
    job_id, token = message.get("job_id"), message.get("token")
    if type(job_id) is not int:
        raise ProtocolError(f"hello has a bad job id {_short(job_id)}")
    if not isinstance(token, str):
        raise ProtocolError("hello has no token")
    return job_id, token


def _cap(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATED)] + _TRUNCATED


def log_record(record: logging.LogRecord) -> dict[str, Any]:
    """A ``log`` message for ``record``, with its arguments merged into the message text."""
    exc_text = record.exc_text
    if record.exc_info:
        exc_text = logging.Formatter().formatException(record.exc_info)
    return {
        "v": PROTOCOL_VERSION,
        "type": MSG_LOG,
        "name": record.name[:MAX_NAME_CHARS],
        "levelno": record.levelno,
        "levelname": record.levelname,
        "msg": _cap(record.getMessage()),
        "created": record.created,
        "exc_text": _cap(exc_text) if exc_text else None,
    }


def parse_log_record(message: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded ``log`` message; return only its validated, bounded fields.

    The result has ``name`` (str), ``levelno`` (int clamped to 1..50), ``msg`` (str, capped),
    ``created`` (float, clamped to a representable time) and ``exc_text`` (str or None, capped).
    Anything else the peer sent is dropped.
    """
    if message.get("type") != MSG_LOG:
        raise ProtocolError(f"expected a log frame, got {_short(message.get('type'))}")
    name, levelno, msg = message.get("name"), message.get("levelno"), message.get("msg")
    created, exc_text = message.get("created"), message.get("exc_text")
    # The usual record, already within every bound: taken as it is (the checks below agree).
    if (type(created) is float and 0.0 <= created <= 1e11 and type(levelno) is int
            and 1 <= levelno <= logging.CRITICAL and type(name) is str
            and len(name) <= MAX_NAME_CHARS and type(msg) is str and len(msg) <= MAX_TEXT_CHARS
            and exc_text is None):
        return {"name": name, "levelno": levelno, "msg": msg, "created": created,
                "exc_text": None}
    if not isinstance(name, str):
        raise ProtocolError(f"log record has a bad name {_short(name)}")
    if type(levelno) is not int:
        raise ProtocolError(f"log record has a bad level {_short(levelno)}")
    if not isinstance(msg, str):
        raise ProtocolError(f"log record has a bad message of type {type(msg).__name__}")
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise ProtocolError(f"log record has a bad time {_short(created)}")
    too_big = isinstance(created, int) and abs(created) > 1e300  # no float holds it
    if too_big or not math.isfinite(created):
        raise ProtocolError(f"log record has a bad time {_short(created)}")
    if exc_text is not None and not isinstance(exc_text, str):
        raise ProtocolError(f"log record has a bad traceback of type {type(exc_text).__name__}")
    return {
        "name": name[:MAX_NAME_CHARS],
        "levelno": min(max(levelno, 1), logging.CRITICAL),
        "msg": _cap(msg),
        # 1e11 s is year ~5100: still formattable by time.localtime, unlike 1e300.
        "created": min(max(float(created), 0.0), 1e11),
        "exc_text": _cap(exc_text) if exc_text else None,
    }


#: A node's first complaint (node.py): which address it could not reach, and why.
_COMPLAINT = re.compile(r"^lofarexec\.node: cannot (?:reach|say hello to) the log server at "
                        r"(\S+) \((.*)\); logging to stderr$")


def find_unreached(errors: str) -> tuple[str, str | None] | None:
    """The log address a node that never reached its log server names in ``errors`` (the end
    of its stderr), and why, when its first complaint is still there; None for a node that
    reached it or no lofarexec node (a plain program). The :data:`NODE_UNREACHED` line comes
    last and survives a long stderr; the complaint alone is there when the node was killed."""
    if _NODE_LINE_PREFIX not in errors:
        return None
    head, _, tail = NODE_UNREACHED.partition("{address}")
    head = _NODE_LINE_PREFIX + head
    address = None
    for line in reversed(errors.splitlines()):
        match = _COMPLAINT.match(line)
        if match and address in (None, match.group(1)):
            return match.group(1), match.group(2)
        if address is None and line.startswith(head) and line.endswith(tail):
            address = line[len(head):len(line) - len(tail)]
    return None if address is None else (address, None)

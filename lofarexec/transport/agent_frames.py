"""The host agent's wire format, control half: frames to and from the agent.

The agent is :mod:`lofarexec.hostprograms.host_agent`.

Shared by every transport that speaks to an agent (``ssh`` and ``cmdline`` through
:class:`lofarexec.transport.agent.AgentClient`, ``paramiko`` on a channel of its own): how a
job's request is encoded, how the agent's output is cut into frames, and when to ping. The
format itself is described in the agent's docstring.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.transport.process import keep_tail
from lofarexec.transport.wrapper import job_environment

HEADER = struct.Struct("!cII")
#: The agent gives up on a control node silent for this many ping intervals (the local ssh
#: client or paramiko gives up on a silent host after about three).
SILENCE_FACTOR = 4


def encode_start(number: int, request: LaunchRequest, kill_grace: float) -> bytes:
    """The start frame: NUL-separated fields, every string as its exact bytes (a NUL cannot be
    in an argv word or an environment entry; :class:`ValueError` says which one has one)."""
    words = [repr(float(kill_grace)), str(len(request.argv)), *request.argv]
    words += [f"{name}={value}" for name, value in job_environment(request).items()]
    fields = [word.encode("utf-8", "surrogateescape") for word in words]
    for field in fields:
        if b"\0" in field:
            raise ValueError(f"{field[:40]!r}... holds a NUL byte, which no argv word or "
                             "environment value can carry")
    payload = b"\0".join(fields)
    return HEADER.pack(b"S", number, len(payload)) + payload


def encode_kill(number: int) -> bytes:
    return HEADER.pack(b"K", number, 0)


PING = HEADER.pack(b"N", 0, 0)


class Pinger:
    """When the control side must say something (a :data:`PING` if nothing else) so that the
    agent, which gives up after ``interval`` x :data:`SILENCE_FACTOR` s of silence, knows it is
    still there. An ``interval`` of 0 turns pings (and the agent's limit) off."""

    def __init__(self, interval: float) -> None:
        self.interval = max(0.0, interval)
        self.silence_limit = self.interval * SILENCE_FACTOR
        self._last = time.monotonic()

    def sent(self) -> None:
        self._last = time.monotonic()

    def due(self) -> bool:
        return self.interval > 0 and time.monotonic() >= self._last + self.interval

    def wait_time(self, deadline: float | None = None) -> float | None:
        """Seconds until a ping is due or ``deadline`` (monotonic) comes, whichever is first;
        None: neither ever."""
        moments = [deadline] if deadline is not None else []
        if self.interval > 0:
            moments.append(self._last + self.interval)
        return max(0.0, min(moments) - time.monotonic()) if moments else None


class FrameJob(Protocol):
    """What :func:`take_frame` needs of a transport's record of a job on an agent."""

    output: bytearray
    errors: bytearray
    pid: int

    def outcome(self, status: int | None, failure: str | None = None) -> Outcome: ...


_Job = TypeVar("_Job", bound=FrameJob)


def take_frame(job: FrameJob, kind: bytes, payload: bytes) -> Outcome | None:
    """Apply one of the agent's frames about ``job``; its outcome when the frame ends it."""
    if kind == b"O":
        keep_tail(job.output, payload)
    elif kind == b"E":
        keep_tail(job.errors, payload)
    elif kind == b"P":
        pid = _number(payload)
        if pid is not None and pid > 1:  # group 1 or below would be "every process" to kill
            job.pid = pid
    elif kind == b"X":
        status = _number(payload)
        if status is None:
            return job.outcome(None, f"the agent's exit status is garbled: {payload[:40]!r}")
        return job.outcome(status)
    elif kind == b"F":
        return job.outcome(None, payload.decode("utf-8", "replace"))
    return None


def _number(payload: bytes) -> int | None:
    """The decimal number a ``P`` or ``X`` frame carries; None for anything else (a garbled
    stream must fail the job, not the thread serving every job of the host)."""
    try:
        return int(payload)
    except ValueError:
        return None


def take_frames(frames: Iterable[tuple[bytes, int, bytes]],
                jobs: dict[int, _Job]) -> Iterator[tuple[_Job, Outcome]]:
    """Apply ``frames`` to the jobs they name in ``jobs`` (by number); each job a frame ended,
    with its outcome, taken out of ``jobs``. A frame about a job no longer there (given up
    on: its kill got no answer in time) is dropped."""
    for kind, number, payload in frames:
        job = jobs.get(number)
        if job is None:
            continue
        outcome = take_frame(job, kind, payload)
        if outcome is not None:
            del jobs[number]
            yield job, outcome


class FrameReader:
    """Cuts the agent's output into ``(kind, job number, payload)`` frames; notes its hello."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.hello = False

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames, offset = [], 0
        while len(buffer) - offset >= HEADER.size:
            kind, number, length = HEADER.unpack_from(buffer, offset)
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            if kind == b"H":
                self.hello = True
            else:
                frames.append((kind, number, bytes(buffer[offset + HEADER.size:end])))
            offset = end
        del buffer[:offset]
        return frames

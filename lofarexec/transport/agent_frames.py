"""The host agent's wire format, control half: frames to and from the agent.

The agent is :mod:`lofarexec.hostprograms.host_agent`.

Shared by every transport that speaks to an agent (``ssh`` and ``cmdline`` through
:class:`lofarexec.transport.agent.AgentClient`, ``paramiko`` on a channel of its own): how a
job's request is encoded, how the agent's output is cut into frames, and when to ping.

Wire format, both ways: frames of ``kind (1 byte) job (uint32) length (uint32)`` then ``length``
bytes. To the agent: ``S`` start (payload: NUL-separated ``grace``, ``argc``, argv words,
``NAME=VALUE`` environment entries: none of them can hold a NUL, so the split is exact and every
byte reaches the job as sent), ``K`` kill, ``N`` nothing (a ping, both ways). From the agent:
``H`` hello (once, at start), ``P`` the job started (payload: its pid, which is also its process
group: should the agent be killed outright, the control node kills that group itself),
``O``/``E`` a chunk of the job's stdout/stderr, ``F`` the job could not be started (payload:
why), ``X`` the job ended (payload: its status in ASCII).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from lofarexec.backend import LaunchRequest, Outcome, Report, report_running
from lofarexec.errors import BackendError
from lofarexec.transport.process import keep_tail
from lofarexec.transport.wrapper import job_environment

HEADER = struct.Struct("!cII")
#: Each side gives up on the other after this many ping intervals without a frame: the agent
#: on the control node, the control node on the agent (both ping while they have nothing to say).
SILENCE_FACTOR = 4
#: The longest frame the agent sends (its output comes in 64 KiB chunks): a longer length is a
#: garbled stream, not something to wait for.
MAX_AGENT_FRAME = 1 << 20
#: How the agent's first frame, its hello, begins.
_HELLO_START = HEADER.pack(b"H", 0, 0)[:5]


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
    still there; and when the control side gives up on the agent in turn (it pings as often),
    having :meth:`heard` nothing from it for as long. An ``interval`` of 0 turns pings and both
    limits off."""

    def __init__(self, interval: float) -> None:
        self.interval = max(0.0, interval)
        self.silence_limit = self.interval * SILENCE_FACTOR
        self._last = self._heard = time.monotonic()

    def sent(self) -> None:
        self._last = time.monotonic()

    def heard(self) -> None:
        """The other side said something (any byte counts); may be called from any thread."""
        self._heard = time.monotonic()

    def due(self) -> bool:
        return self.interval > 0 and time.monotonic() >= self._last + self.interval

    def silent(self) -> bool:
        """Whether nothing was heard for the silence limit: the other side is gone (frozen, or
        its link is, which TCP keepalives do not show: the kernel answers them)."""
        return self.interval > 0 and time.monotonic() >= self._heard + self.silence_limit

    def given_up(self, who: str) -> str:
        """Why ``who`` (the host, its agent), :meth:`silent` for the limit, is given up."""
        return f"{who} was silent for {self.silence_limit:g} s (a frozen host or link?)"

    def wait_time(self, deadline: float | None = None) -> float | None:
        """Seconds until a ping is due, the silence limit passes or ``deadline`` (monotonic)
        comes, whichever is first; None: none ever."""
        moments = [deadline] if deadline is not None else []
        if self.interval > 0:
            moments += [self._last + self.interval, self._heard + self.silence_limit]
        return max(0.0, min(moments) - time.monotonic()) if moments else None


class FrameJob(Protocol):
    """What :func:`take_frame` needs of a transport's record of a job on an agent."""

    output: bytearray
    errors: bytearray
    pid: int
    report: Report

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
        report_running(job.report)  # its time limit counts from now
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
    """Cuts the agent's output into ``(kind, job number, payload)`` frames; notes its hello and
    drops its pings.

    :meth:`feed` raises :class:`~lofarexec.errors.BackendError` (to be reported with the host's
    name) for a stream that cannot be the agent's: anything before its hello (a login script
    that prints to standard output) or a frame longer than :data:`MAX_AGENT_FRAME`, which would
    otherwise be waited for, swallowing everything after it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.hello = False

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        buffer = self._buffer
        buffer += data
        if not self.hello and not buffer.startswith(_HELLO_START[:len(buffer)]):
            raise BackendError(f"the host printed {_shown(buffer)} before the agent started: a "
                               "login script writing to standard output? Make it print only "
                               "for interactive shells (or to stderr)")
        frames, offset = [], 0
        while len(buffer) - offset >= HEADER.size:
            kind, number, length = HEADER.unpack_from(buffer, offset)
            if length > MAX_AGENT_FRAME:
                raise BackendError(f"the host agent's output is garbled: a frame of {length} "
                                   f"bytes (at most {MAX_AGENT_FRAME}) near "
                                   f"{_shown(buffer[offset:])}")
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            if kind == b"H":
                self.hello = True
            elif kind != b"N":
                frames.append((kind, number, bytes(buffer[offset + HEADER.size:end])))
            offset = end
        del buffer[:offset]
        return frames


def _shown(data: bytes | bytearray) -> str:
    """The first bytes of ``data``, quoted, for a message."""
    text = bytes(data[:40]).decode("utf-8", "replace")
    return repr(text) + ("..." if len(data) > 40 else "")

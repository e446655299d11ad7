"""How a host's agent ends, on the control node: the half of
:class:`~lofarexec.transport.agent.AgentClient` that runs once its local program ended (or never
started), and the record of each job it was asked to run.

When the program's streams end, a worker of the loop (not the loop's thread: it waits for the
program, may read statuses and kill orphans over a new session) reports every job still
running, exactly once: by the status the agent recorded on its host if the link merely stalled
(:func:`~lofarexec.transport.orphans.fetch_statuses`), else as a transport error in the
program's own words, after killing what the agent left on its host. Then the client is
finished, and its descriptor slot given back.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import threading
from collections.abc import Callable

from lofarexec.backend import Outcome, Report
from lofarexec.transport.agent_frames import FrameReader, Pinger
from lofarexec.transport.orphans import stalled_note
from lofarexec.transport.process import signal_group
from lofarexec.transport.wrapper import last_lines

#: Seconds past ``kill_grace`` before a killed job with no answer is given up.
KILL_CONFIRM = 2.0


class AgentJob:
    """A job the agent was asked to run, until it is reported (exactly once)."""

    __slots__ = ("errors", "host", "kill_sent", "number", "output", "pid", "report")

    def __init__(self, number: int, host: str, report: Report) -> None:
        self.number = number
        self.host = host
        self.report = report
        self.output = bytearray()
        self.errors = bytearray()
        self.pid = 0  # on the host; also its process group there
        self.kill_sent = False

    def outcome(self, status: int | None, failure: str | None = None) -> Outcome:
        output = self.output.decode("utf-8", errors="replace")
        errors = self.errors.decode("utf-8", errors="replace")
        if failure is not None or status is None:
            reason = " ".join(f"{self.host}: {failure or 'no exit status'}".split())
            return Outcome(None, transport_error=reason, output=output, errors=errors)
        return Outcome(status, output=output, errors=errors)


class AgentEnd:
    """The end of an :class:`~lofarexec.transport.agent.AgentClient`'s agent (its base)."""

    host: str
    kill_grace: float
    _lock: threading.Lock
    _requests: list
    _jobs: dict[int, AgentJob]
    _dead: bool
    _closing: bool
    _end_reason: str
    _failure: str | None
    _stderr: bytearray
    _frames: FrameReader
    _pinger: Pinger
    _finished: threading.Event
    _process: subprocess.Popen[bytes] | None
    _channel: socket.socket | None
    _on_finished: Callable[[], None] | None
    _kill_orphans: Callable[[list[int]], bool] | None
    _fetch_statuses: Callable[[list[int]], dict[int, int]] | None

    def force_end(self) -> None:
        """The agent does not answer: end its link from here."""
        if self._process is not None:
            signal_group(self._process.pid, signal.SIGKILL)

    def _die_locked(self, reason: str) -> list[AgentJob]:
        """Mark the agent dead for ``reason`` (unless it is closing) and take the start requests
        it will never send: their jobs, for the caller to fail. The lock is held."""
        self._dead = True
        if not self._closing:
            self._end_reason = reason
        unstarted = [job for what, job, _ in self._requests if what == "start"]
        self._requests.clear()
        return unstarted

    def _finish_unlaunched(self, reason: str) -> None:
        """The program never started (or never will): fail the queued jobs with ``reason``."""
        with self._lock:
            if self._dead:
                return
            unstarted = self._die_locked(reason)
        try:
            for job in unstarted:
                job.report(job.outcome(None, reason))
        finally:
            self._finish()

    def _finish(self) -> None:
        self._finished.set()
        if self._on_finished is not None:
            self._on_finished()

    def _give_up(self, reason: str) -> None:
        """End the link from here (its end then fails the running jobs with ``reason``): the
        agent cannot be understood or heard. Its jobs need no orphan kill: the agent kills
        them at its link's end, or after its own silence limit."""
        self._failure = reason
        self._pinger = Pinger(0)  # asked once
        self.force_end()

    def _ended(self) -> None:
        """The program closed its output (a worker of the loop runs this): fail what still
        runs, in its own words."""
        process, channel = self._process, self._channel
        assert process is not None and channel is not None
        channel.close()  # end of file for the program's stdin, if it still reads it
        try:
            status = process.wait(self.kill_grace + KILL_CONFIRM)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            status = process.wait()
        process.stderr.close()  # type: ignore[union-attr]
        said = last_lines(self._stderr.decode("utf-8", "replace")) or "no output"
        if self._failure is not None:
            reason = self._failure
        elif not self._frames.hello:
            what = ("the connection failed" if status == 255
                    else f"the remote launcher failed (status {status})")
            reason = f"{what}: {said}"
        else:
            reason = f"the host's agent or its connection ended (status {status}): {said}"
        with self._lock:
            unstarted = self._die_locked(reason)
        try:
            self._report_end(reason, unstarted)
        finally:
            self._finish()

    def _report_end(self, reason: str, unstarted: list[AgentJob]) -> None:
        """Report the jobs the ended program leaves: by their recorded status, or ``reason``
        (after killing what the agent left on its host)."""
        if self._frames.hello and self._jobs and self._fetch_statuses is not None:
            for number, status in self._fetch_statuses(list(self._jobs)).items():
                job = self._jobs.pop(number)
                job.report(dataclasses.replace(job.outcome(status),
                                               note=stalled_note(self.host)))
        if self._frames.hello and self._jobs and self._failure is None:
            orphans = [job.pid for job in self._jobs.values() if job.pid]
            if orphans and self._kill_orphans is not None:
                self._kill_orphans(orphans)
        jobs, self._jobs = [*self._jobs.values(), *unstarted], {}
        for job in jobs:
            job.report(job.outcome(None, reason))

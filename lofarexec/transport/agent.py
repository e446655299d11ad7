"""The control-node end of a host agent reached through a local program's pipes.

The agent (:mod:`lofarexec.hostprograms.host_agent`) runs behind ``ssh HOST python3 -c <agent>``
or a ``cmdline`` template. A transport that can keep one remote command running per host gets
every job of that host through it: a start frame of a few hundred bytes each
(:mod:`lofarexec.transport.agent_frames`), instead of a process here, an SSH session, a remote
shell and a Python start-up there.
An :class:`~lofarexec.transport.agent_pool.AgentPool` keeps one :class:`AgentClient` per host.

One :class:`AgentClient` per host: a local process (the transport's client, in a session of its
own) and one thread that owns its pipes. Other threads only queue requests and wake it, so
``start()`` and ``kill()`` never block on a slow or stalled link::

    start(request, report) / kill() --> requests + wake pipe --+
                                                               v
    the client's thread: select() on the agent's stdout and stderr, its stdin when frames
    wait to be written, the wake pipe; frames in -> each job's output tails, its end ->
    report(Outcome); a kill not answered within kill_grace + 2 s -> reported as a transport
    error; the local process ends -> its running jobs are transport errors in its own words;
    the agent silent for its silence limit, or its output garbled (a login script printing
    before it started) -> the local process is killed, and its jobs are told why, except those
    whose status the agent recorded on its host (read over a fresh session: they end with it)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import selectors
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

from lofarexec.backend import JobHandle, LaunchRequest, Outcome, Report
from lofarexec.errors import BackendError
from lofarexec.transport.agent_frames import (
    PING,
    FrameReader,
    Pinger,
    encode_kill,
    encode_start,
    take_frames,
)
from lofarexec.transport.orphans import stalled_note
from lofarexec.transport.process import signal_group
from lofarexec.transport.timers import TimerHeap
from lofarexec.transport.wakeup import WakePipe
from lofarexec.transport.wrapper import last_lines

#: Seconds past ``kill_grace`` before a killed job with no answer is given up.
KILL_CONFIRM = 2.0
_CHUNK = 65536


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


class AgentClient:
    """One host's agent, started as the local program ``argv`` (which must run the agent and
    connect its stdin and stdout to it), and the thread that serves its jobs. ``pinger`` says
    when to ping (the agent was started with its silence limit) and when the agent, silent for
    as long, is given up.

    ``kill_orphans(pids)`` is called when the agent ended while the local program could still
    reach the host (it was killed there): it should kill those process groups on the host and
    say whether it could. ``fetch_statuses(numbers)`` is called first, when the link ended
    with jobs running: the statuses the agent recorded on the host for those job numbers
    (:func:`~lofarexec.transport.orphans.fetch_statuses`); those jobs end with them.
    """

    def __init__(self, host: str, argv: Sequence[str], *, kill_grace: float,
                 pinger: Pinger | None = None,
                 kill_orphans: Callable[[list[int]], bool] | None = None,
                 fetch_statuses: Callable[[list[int]], dict[int, int]] | None = None) -> None:
        self.host = host
        self._fetch_statuses = fetch_statuses
        self._pinger = pinger or Pinger(0)
        self.kill_grace = kill_grace
        self._kill_orphans = kill_orphans
        self._lock = threading.Lock()
        self._requests: list[tuple[str, AgentJob, LaunchRequest | None]] = []
        self._jobs: dict[int, AgentJob] = {}  # the thread's own
        self._numbers = itertools.count(1)
        self._closing = self._dead = False
        self._end_reason = "the host's agent is closing"  # what late jobs are told
        self._failure: str | None = None  # why this side ended the link, if it did
        self._outbox = bytearray()
        self._stderr = bytearray()
        self._frames = FrameReader()
        self._timers: TimerHeap[int] = TimerHeap()  # job numbers killed, awaiting an answer
        self._waker = WakePipe()
        try:
            self._process = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)  # Ctrl-C: ours to pass on
        except OSError:  # e.g. out of descriptors: the pool reports the job
            self._waker.close()
            raise
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"agent-{host}")
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------
    def usable(self) -> bool:
        """Whether new jobs may come here (the local program still runs, not closing)."""
        return not (self._dead or self._closing)

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        """Queue ``request`` for the agent; its outcome reaches ``report`` from the thread."""
        with self._lock:
            job = AgentJob(next(self._numbers), request.host, report)
            refused = self._dead or self._closing
            if not refused:
                self._requests.append(("start", job, request))
        if refused:
            job.report(job.outcome(None, self._end_reason))
        else:
            self._wake()
        return _AgentJobHandle(self, job)

    def kill(self, job: AgentJob) -> None:
        with self._lock:
            if self._dead:
                return
            self._requests.append(("kill", job, None))
        self._wake()

    def shutdown(self) -> None:
        """Begin closing without waiting: refuse new jobs, kill running ones (so that closing
        many clients costs one grace period, not one each)."""
        with self._lock:
            self._closing = True
        self._wake()

    def close(self) -> None:
        """Kill what still runs, wait for those reports, then end the agent and the local
        program (forcibly, if they do not end in time); safe twice."""
        self.shutdown()
        self._thread.join(self.kill_grace + KILL_CONFIRM + 5.0)
        if self._thread.is_alive():  # the agent does not answer: end its link from here
            signal_group(self._process.pid, signal.SIGKILL)
            self._thread.join()
        self._waker.close()

    def _wake(self) -> None:
        self._waker.wake()

    # -- the client's thread ---------------------------------------------------------------
    def _serve(self) -> None:
        process = self._process
        assert process.stdin and process.stdout and process.stderr
        os.set_blocking(process.stdin.fileno(), False)
        with selectors.DefaultSelector() as selector:
            selector.register(self._waker, selectors.EVENT_READ, "wake")
            selector.register(process.stdout, selectors.EVENT_READ, "stdout")
            selector.register(process.stderr, selectors.EVENT_READ, "stderr")
            open_streams, watching_stdin = 2, False
            while open_streams:
                closing = self._take_requests()
                if self._outbox and not process.stdin.closed and not self._flush(
                        process.stdin.fileno()):
                    if watching_stdin:
                        selector.unregister(process.stdin)
                        watching_stdin = False
                    process.stdin.close()
                stdin_open = not process.stdin.closed
                if (stdin_open and bool(self._outbox)) != watching_stdin:
                    if watching_stdin:
                        selector.unregister(process.stdin)
                    else:
                        selector.register(process.stdin, selectors.EVENT_WRITE, "stdin")
                    watching_stdin = not watching_stdin
                if closing and stdin_open and not self._jobs and not self._outbox:
                    process.stdin.close()  # the agent ends at EOF; its end ends the program
                for key, _ in selector.select(self._next_timeout()):
                    if key.data == "wake":
                        self._waker.drain()
                    elif key.data == "stdin":
                        if not self._flush(key.fd):
                            selector.unregister(process.stdin)
                            watching_stdin = False
                            process.stdin.close()
                    elif not self._read(key.fd, key.data):
                        selector.unregister(key.fileobj)
                        open_streams -= 1
                self._run_timers()
                if self._pinger.silent():
                    self._give_up(self._pinger.given_up("the host's agent") + "; it kills its "
                                  "jobs after as long without word from here")
                if self._pinger.due() and not process.stdin.closed:
                    self._outbox += PING
                    self._pinger.sent()
        self._ended()

    def _take_requests(self) -> bool:
        with self._lock:
            requests, self._requests = self._requests, []
            closing = self._closing
        for what, job, request in requests:
            if what == "start":
                assert request is not None
                try:
                    self._outbox += encode_start(job.number, request, self.kill_grace)
                except ValueError as exc:
                    job.report(job.outcome(None, f"cannot start the job: {exc}"))
                    continue
                self._jobs[job.number] = job
            elif job.number in self._jobs:
                self._send_kill(job)
        if closing:
            for job in list(self._jobs.values()):
                self._send_kill(job)
        return closing

    def _send_kill(self, job: AgentJob) -> None:
        if not job.kill_sent:
            job.kill_sent = True
            self._outbox += encode_kill(job.number)
            self._timers.add(self.kill_grace + KILL_CONFIRM, job.number)

    def _flush(self, stdin: int) -> bool:
        """Write what waits, as far as the pipe takes it; False when the program is gone (its
        end, EOF on its stdout, then tells the jobs)."""
        try:
            while self._outbox:
                written = os.write(stdin, self._outbox[:_CHUNK * 4])
                del self._outbox[:written]
                self._pinger.sent()
        except BlockingIOError:
            pass
        except OSError:
            self._outbox.clear()
            return False
        return True

    def _read(self, fd: int, which: str) -> bool:
        """Take what the program said; False at the stream's end (or a garbled one's)."""
        try:
            data = os.read(fd, _CHUNK * 4)
        except OSError:
            data = b""
        if not data:
            return False
        self._pinger.heard()
        if which == "stderr":
            self._stderr += data
            del self._stderr[:-4096]
            return True
        try:
            frames = self._frames.feed(data)
        except BackendError as exc:
            self._give_up(str(exc))
            return False
        for job, outcome in take_frames(frames, self._jobs):
            job.report(outcome)
        return True

    def _give_up(self, reason: str) -> None:
        """End the link from here (its end then fails the running jobs with ``reason``): the
        agent cannot be understood or heard. Its jobs need no orphan kill: the agent kills
        them at its link's end, or after its own silence limit."""
        self._failure = reason
        self._pinger = Pinger(0)  # asked once
        signal_group(self._process.pid, signal.SIGKILL)

    def _run_timers(self) -> None:
        for number in self._timers.pop_due():
            job = self._jobs.pop(number, None)
            if job is not None:
                waited = self.kill_grace + KILL_CONFIRM
                job.report(job.outcome(None, f"no answer within {waited:g} s of its kill; "
                                             "given up"))

    def _next_timeout(self) -> float | None:
        return self._pinger.wait_time(self._timers.next_due())

    def _ended(self) -> None:
        """The program closed its output: fail what still runs, in its own words."""
        process = self._process
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        try:
            status = process.wait(self.kill_grace + KILL_CONFIRM)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            status = process.wait()
        process.stdout.close()  # type: ignore[union-attr]
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
            self._dead = True
            if not self._closing:
                self._end_reason = reason
            unstarted = [job for what, job, _ in self._requests if what == "start"]
            self._requests.clear()
        if self._frames.hello and self._jobs and self._fetch_statuses is not None:
            for number, status in self._fetch_statuses(list(self._jobs)).items():
                job = self._jobs.pop(number)
                job.report(dataclasses.replace(job.outcome(status),
                                               note=stalled_note(self.host)))
        if self._frames.hello and self._jobs and self._failure is None:
            orphans = [job.pid for job in self._jobs.values() if job.pid]
            if orphans and self._kill_orphans is not None:
                self._kill_orphans(orphans)
        for job in [*self._jobs.values(), *unstarted]:
            job.report(job.outcome(None, reason))
        self._jobs.clear()


class _AgentJobHandle:
    __slots__ = ("_client", "_job")

    def __init__(self, client: AgentClient, job: AgentJob) -> None:
        self._client = client
        self._job = job

    def kill(self) -> None:
        self._client.kill(self._job)

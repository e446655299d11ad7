"""The control-node end of a host agent reached through a local program (its stdin, stdout, stderr).

The agent (:mod:`lofarexec.hostprograms.host_agent`) runs behind ``ssh HOST python3 -c <agent>``
or a ``cmdline`` template. A transport that can keep one remote command running per host gets
every job of that host through it: a start frame of a few hundred bytes each
(:mod:`lofarexec.transport.agent_frames`), instead of a process here, an SSH session, a remote
shell and a Python start-up there.
An :class:`~lofarexec.transport.agent_pool.AgentPool` keeps one :class:`AgentClient` per host.

One :class:`AgentClient` per host: a local process (the transport's client, in a session of its
own; two descriptors here: a socket for its stdin and stdout, a pipe for its stderr) served by
an :class:`~lofarexec.transport.agent_loop.AgentLoop`, the one thread that serves every host of
the pool. Other threads only queue requests and poke the loop, so ``start()`` and ``kill()``
never block on a slow or stalled link::

    start(request, report) / kill() --> requests + loop.poke(client) --+
                                                                       v
    the loop's thread: the agent's channel (written to when frames wait) and stderr; frames
    in -> each job's output tails, its end -> report(Outcome); a kill not
    answered within kill_grace + 2 s -> reported as a transport error; the agent silent for its
    silence limit, or its output garbled (a login script printing before it started) -> the
    local process is killed; its streams ended -> a worker of the loop fails its running jobs
    in its own words, except those whose status the agent recorded on its host (read over a
    fresh session: they end with it), after killing what the agent left there
"""

from __future__ import annotations

import itertools
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from lofarexec.backend import JobHandle, LaunchRequest, Report
from lofarexec.errors import BackendError
from lofarexec.transport.agent_end import KILL_CONFIRM, AgentEnd, AgentJob
from lofarexec.transport.agent_frames import (
    PING,
    FrameReader,
    Pinger,
    encode_kill,
    encode_start,
    take_frames,
)
from lofarexec.transport.agent_loop import AgentLoop
from lofarexec.transport.descriptors import out_of_descriptors
from lofarexec.transport.timers import TimerHeap

_CHUNK = 65536


class AgentClient(AgentEnd):
    """One host's agent, started as the local program ``argv`` (which must run the agent and
    connect its stdin and stdout to it), served by ``loop`` (made for this client alone when
    None). ``pinger`` says when to ping (the agent was started with its silence limit) and
    when the agent, silent for as long, is given up.

    Without a ``loop`` the program starts at once (an :class:`OSError` if it cannot); with one
    it starts when the pool calls :meth:`launch` (on a worker: spawning a process must not hold
    up other hosts), and a program that cannot be started fails this client's jobs.
    ``on_finished()`` is called once, when the program ended and every job was reported (or it
    never started): its descriptors are closed.

    ``kill_orphans(pids)`` is called when the agent ended while the local program could still
    reach the host (it was killed there): it should kill those process groups on the host and
    say whether it could. ``fetch_statuses(numbers)`` is called first, when the link ended
    with jobs running: the statuses the agent recorded on the host for those job numbers
    (:func:`~lofarexec.transport.orphans.fetch_statuses`); those jobs end with them.
    """

    def __init__(self, host: str, argv: Sequence[str], *, kill_grace: float,
                 pinger: Pinger | None = None,
                 kill_orphans: Callable[[list[int]], bool] | None = None,
                 fetch_statuses: Callable[[list[int]], dict[int, int]] | None = None,
                 loop: AgentLoop | None = None, program: str | None = None,
                 on_finished: Callable[[], None] | None = None) -> None:
        self.host = host
        self._argv = list(argv)
        self._program = program or self._argv[0]
        self._fetch_statuses = fetch_statuses
        self._pinger = pinger or Pinger(0)
        self.kill_grace = kill_grace
        self._kill_orphans = kill_orphans
        self._on_finished = on_finished
        self._lock = threading.Lock()
        self._requests: list[tuple[str, AgentJob, LaunchRequest | None]] = []
        self._jobs: dict[int, AgentJob] = {}  # the loop's own
        self._numbers = itertools.count(1)
        self._closing = self._dead = self._launching = self._reclaim = False
        self._streams_ended = False
        self._end_reason = "the host's agent is closing"  # what late jobs are told
        self._failure: str | None = None  # why this side ended the link, if it did
        self._outbox = bytearray()
        self._stderr = bytearray()
        self._frames = FrameReader()
        self._timers: TimerHeap[int] = TimerHeap()  # job numbers killed, awaiting an answer
        self._due: float | None = None  # of this client's entry in the loop's timers
        self._channel: socket.socket | None = None  # here the program's stdin and stdout
        self._channel_events = 0  # what the loop watches the channel for
        self._reading = True  # until the channel's end of file
        self._writing = True  # until this side shuts its writing half (the agent's EOF)
        self._open_streams = 0
        self._finished = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._own_loop = loop is None
        self._loop = loop or AgentLoop(name=f"agent-{host}")
        if self._own_loop:
            try:
                self._launching = True
                self._spawn()
            except OSError:  # e.g. out of descriptors: the caller reports the job
                self._loop.close()
                raise
            self._loop.attach(self)

    # -- any thread ------------------------------------------------------------------------
    def usable(self) -> bool:
        """Whether new jobs may come here (the local program runs or will, not closing)."""
        return not (self._dead or self._closing or self._streams_ended)

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        """Queue ``request`` for the agent; its outcome reaches ``report`` from the loop (a
        client that ended tells it why)."""
        return self._queue(request, report, refuse=False)  # type: ignore[return-value]

    def offer(self, request: LaunchRequest, report: Report) -> JobHandle | None:
        """Queue ``request`` as :meth:`start` does; None (nothing reported) when this client
        takes no more jobs, for the caller to try a new one."""
        return self._queue(request, report, refuse=True)

    def _queue(self, request: LaunchRequest, report: Report, *, refuse: bool) -> JobHandle | None:
        with self._lock:
            ended = self._dead or self._closing
            if refuse and (ended or self._streams_ended):
                return None
            job = AgentJob(next(self._numbers), request.host, report)
            if not ended:  # a job queued after the streams ended is told why, with the rest
                self._requests.append(("start", job, request))
        if ended:
            job.report(job.outcome(None, self._end_reason))
        else:
            self._loop.poke(self)
        return _AgentJobHandle(self, job)

    def kill(self, job: AgentJob) -> None:
        with self._lock:
            if self._dead:
                return
            self._requests.append(("kill", job, None))
        self._loop.poke(self)

    def release_when_idle(self) -> None:
        """Another host waits for descriptors: end this agent once it has nothing to do."""
        with self._lock:
            self._reclaim = True
        self._loop.poke(self)

    def launch(self) -> None:
        """Start the local program and hand it to the loop (blocking: run it on a worker); one
        that cannot be started fails this client's jobs."""
        with self._lock:
            abandon = self._dead or self._closing
            self._launching = not abandon
        if abandon:
            self._finish_unlaunched(self._end_reason)
            return
        try:
            self._spawn()
        except OSError as exc:
            why = out_of_descriptors(exc) or exc.strerror or str(exc)
            self._finish_unlaunched(f"cannot start {self._program!r}: {why}")
            return
        self._loop.attach(self)

    def shutdown(self) -> None:
        """Begin closing without waiting: refuse new jobs, kill running ones (so that closing
        many clients costs one grace period, not one each)."""
        with self._lock:
            self._closing = True
            unlaunched = self._process is None and not self._launching
        if unlaunched:
            self._finish_unlaunched(self._end_reason)
        else:
            self._loop.poke(self)

    def finished(self) -> bool:
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Whether the program ended and every job was reported, within ``timeout``."""
        return self._finished.wait(timeout)

    def close(self) -> None:
        """Kill what still runs, wait for those reports, then end the agent and the local
        program (forcibly, if they do not end in time); safe twice."""
        self.shutdown()
        if not self._finished.wait(self.kill_grace + KILL_CONFIRM + 5.0):
            self.force_end()
            self._finished.wait()
        if self._own_loop:
            self._loop.close()

    def _spawn(self) -> None:
        # The program's stdin and stdout are one socket: two descriptors per host here, not three.
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                self._argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                start_new_session=True)  # Ctrl-C: ours to pass on
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours

    # -- the loop's thread -----------------------------------------------------------------
    def _attached(self) -> None:
        process = self._process
        assert process is not None and process.stderr and self._channel is not None
        self._loop.register(process.stderr, selectors.EVENT_READ, (self, "stderr"))
        self._open_streams = 2  # the channel's reading half and stderr
        self._service()

    def _service(self) -> None:
        """Take the requests, write what waits; end the agent when closing with nothing left
        (its end at EOF ends the program); when the next timer is due."""
        closing = self._take_requests()
        if self._outbox and self._writing and not self._flush(self._channel_fd()):
            self._close_writing()
        if closing and self._writing and not self._jobs and not self._outbox:
            self._close_writing()
        self._watch()
        self._schedule()

    def _channel_fd(self) -> int:
        assert self._channel is not None
        return self._channel.fileno()

    def _watch(self) -> None:
        """Have the loop watch the channel for what this side still reads, or has to write."""
        events = ((selectors.EVENT_READ if self._reading else 0)
                  | (selectors.EVENT_WRITE if self._writing and self._outbox else 0))
        if events != self._channel_events:
            if not self._channel_events:
                self._loop.register(self._channel, events, (self, "channel"))
            elif not events:
                self._loop.unregister(self._channel)
            else:
                self._loop.modify(self._channel, events, (self, "channel"))
            self._channel_events = events

    def _close_writing(self) -> None:
        """End of file for the program's stdin (the agent's end); the channel is still read."""
        self._writing = False
        self._outbox.clear()
        try:
            self._channel.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
        except OSError:  # the program is gone already
            pass
        self._watch()

    def _schedule(self) -> None:
        wait = self._pinger.wait_time(self._timers.next_due())
        if wait is None:
            return
        due = time.monotonic() + wait
        if self._due is None or due < self._due:
            self._due = due
            self._loop.schedule(self, due)

    def _ready(self, which: str, events: int) -> None:
        process = self._process
        assert process is not None and process.stderr
        wrote = which == "channel" and events & selectors.EVENT_WRITE and self._writing
        if wrote and not self._flush(self._channel_fd()):
            self._close_writing()
        ended = False
        if which == "stderr" and not self._read(process.stderr.fileno(), which):
            self._loop.unregister(process.stderr)
            ended = True
        elif (which == "channel" and events & selectors.EVENT_READ and self._reading
              and not self._read(self._channel_fd(), "stdout")):
            self._reading = False  # the program closed its stdout, or ended
            self._close_writing()  # nobody is left to read what this side would write
            ended = True
        if ended:
            self._open_streams -= 1
            if self._open_streams == 0:
                self._detach()
                return
        if self._closing or self._reclaim or wrote:
            self._service()

    def _on_timer(self, due: float) -> None:
        if due != self._due:
            return  # an earlier entry's moment: a later one replaced it
        self._due = None
        self._run_timers()
        if self._pinger.silent():
            self._give_up(self._pinger.given_up("the host's agent") + "; it kills its jobs "
                          "after as long without word from here")
        if self._pinger.due() and self._writing:
            self._outbox += PING
            self._pinger.sent()
        self._service()

    def _detach(self) -> None:
        with self._lock:
            self._streams_ended = True
        self._reading = self._writing = False
        self._watch()
        self._loop.detach(self, self._ended)

    def _take_requests(self) -> bool:
        with self._lock:
            requests, self._requests = self._requests, []
            if self._reclaim and not requests and not self._jobs and not self._outbox:
                self._closing = True  # idle, and another host waits: give the slot back
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
        """Write what waits, as far as the channel takes it; False when the program is gone (its
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

    def _run_timers(self) -> None:
        for number in self._timers.pop_due():
            job = self._jobs.pop(number, None)
            if job is not None:
                waited = self.kill_grace + KILL_CONFIRM
                job.report(job.outcome(None, f"no answer within {waited:g} s of its kill; "
                                             "given up"))

class _AgentJobHandle:
    __slots__ = ("_client", "_job")
    starts_later = True  # queued for the agent: the P frame says when it runs (report_running)

    def __init__(self, client: AgentClient, job: AgentJob) -> None:
        self._client = client
        self._job = job

    def kill(self) -> None:
        self._client.kill(self._job)

"""One SSH connection to a host, served by the backend's hub thread (:mod:`.hub`).

::

    HostPool.assign_locked(job) --> pending --+
    handle.kill() --------------->  kills ----+--> hub.poke(connection) --+
    paramiko's thread: data, exit status, close --> notified ------------+
    a set-up thread: a job's channel opened --> opened ------------------+
                                                                          v
    set-up (.setup): resolve the host; the hub waits for the TCP connect and the key exchange
    (.dial); a set-up thread logs in and starts the host agent (agent mode), then hands the
    connection to the hub; the hub thread: a turn per poke: start jobs (agent mode: a start
    frame each; channel mode: a set-up thread opens each job's channel, .channels), send
    kills, move the channels' output into the jobs' tails and report ended jobs; probe the
    host (and ping its agent) every alive_interval: silent for four, it is given up (a frozen
    host answers no probe, though its kernel answers TCP keepalives)
    connection (or agent) lost: a set-up thread ends it: running jobs are transport errors;
    jobs not started yet move (once) to another connection of the host, so a dropped idle
    connection costs no job

paramiko's own thread per transport fills each channel's buffers; the hub only moves bytes out
of them, a bounded amount per turn, so a job that writes a lot cannot stall the others. No
channel has a descriptor: its buffers and its ``status_event`` call :meth:`Connection.notify`
(:func:`.connect.watch_channel`), so a host costs its socket alone (issue 17). Out of file
descriptors, a job or connection fails saying so (:func:`lofarexec.transport.out_of_descriptors`);
the hub never dies of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import paramiko

from lofarexec.backend import Outcome, report_running
from lofarexec.transport import KILL_CONFIRM, Pinger, Slot, TimerHeap, out_of_descriptors

from .agent import AgentLink
from .channels import closed_channel_outcome
from .connect import CHANNEL_ERRORS, lost, lost_reason, probe, translate
from .dial import Dial
from .jobs import Job, State, one_line
from .setup import ConnectionSetUp

if TYPE_CHECKING:
    from .pool import HostPool

_log = logging.getLogger("lofarexec.paramiko")


class Connection(ConnectionSetUp):
    """One transport to ``pool.target`` carrying up to ``sessions`` jobs.

    Methods ending in ``_locked`` are called with ``pool.lock`` held; ``load`` is the number of
    jobs given to this connection and not yet reported, counted by the pool. Underscored
    methods here run in the hub's thread; those of :class:`.setup.ConnectionSetUp` in set-up
    threads.
    """

    def __init__(self, pool: HostPool, number: int) -> None:
        self.pool = pool
        self.hub = pool.hub
        self.settings = pool.settings
        self.number = number
        self.load = 0
        self.due: float | None = None  # the hub's: when this connection's next turn is due
        self._lock = pool.lock
        self._pending: deque[Job] = deque()
        self._kills: list[Job] = []
        # appended by paramiko's threads (channel events) and set-up threads, without a lock
        self._notified: deque[Job | AgentLink] = deque()
        self._opened: deque[tuple[Job, paramiko.Channel | Outcome | None]] = deque()
        self._running: set[Job] = set()  # the hub's own
        self._opening = 0  # channel mode: channels a set-up thread is opening (the hub's)
        self._agent: AgentLink | None = None  # agent mode: the host agent's channel
        self._dial: Dial | None = None  # how it connects, until the hub serves it
        self._timers: TimerHeap[Job] = TimerHeap()  # killed jobs awaiting their end
        self._dead = self._closing = self._established = False
        self._serving = False  # handed to the hub: its turns do something
        self._end_asked = self._over = False
        self._end_reason: str | None = None
        self._transport: paramiko.Transport | None = None
        self._alive = Pinger(self.settings.alive_interval)  # the host: probed, heard, given up
        self._started = False
        self._ended = threading.Event()
        self._slot: Slot | None = None  # its share of the process's descriptor budget
        self._open_once = threading.Lock()  # not the pool's: a grant may come under it
        self._open_submitted = False
        self._reclaimed = False  # another host waits for descriptors: close once idle

    # -- any thread ------------------------------------------------------------------------
    def usable(self) -> bool:
        """Whether new jobs may go here (not dead, not closing, transport not known dead)."""
        transport = self._transport
        alive = transport is None or not self._established or not lost(transport)
        return alive and not (self._dead or self._closing)

    def enqueue_locked(self, job: Job) -> None:
        self._pending.append(job)
        self.hub.poke(self)

    def request_kill_locked(self, job: Job) -> None:
        if not job.kill_requested:
            job.kill_requested = True
            self._kills.append(job)
            self.hub.poke(self)

    def forget_pending_locked(self, job: Job) -> None:
        self._pending.remove(job)
        self.load -= 1

    def shutdown(self) -> None:
        """Begin closing: refuse new jobs, kill running ones; abort a handshake in progress."""
        with self._lock:
            self._closing = True
            aborting = self._transport if not self._established else None
            dial = self._dial
        self.hub.poke(self)
        if dial is not None:
            dial.abort()  # still connecting: it ends at once, and its set-up thread cleans up
        if aborting is not None:
            aborting.close()  # a handshake or log-in in progress fails at once
        slot = self._slot
        if slot is not None and not slot.granted:  # still waiting for descriptors: stop
            slot.release()
            self._granted()  # the set-up thread sees the backend closing and ends at once

    def join(self) -> None:
        """Wait until the connection has ended and released everything; safe twice."""
        if self._started:
            self._ended.wait()

    def finished(self) -> bool:
        return self._ended.is_set()

    # -- the hub's thread ------------------------------------------------------------------
    def turn(self) -> float | None:
        """Serve what is pending; the monotonic moment of the next probe, ping or kill
        deadline. Once the connection must end (and no channel is still being opened), its
        end goes to a set-up thread (it may wait for the host)."""
        if not self._serving or self._over:
            return None
        transport = self._transport
        assert transport is not None
        try:
            self._step(transport)
        except Exception as exc:  # noqa: BLE001 - a bug: fail this host's jobs loudly
            if out_of_descriptors(exc) is None:
                _log.exception("%s: serving a paramiko connection failed", self.target.name)
            self._ask_end(str(translate(exc, self.target, "serving jobs on")))
        if not self._end_asked:
            return self._next_due()
        if self._opening:
            return None  # the transport is closed or lost: those opens fail soon and poke
        self._over = True
        reason = self._end_reason or lost_reason(transport, self.target)
        self.hub.submit(lambda: self._end(reason, established=True))
        return None

    def _ask_end(self, reason: str | None) -> None:
        """The connection must end: for ``reason``, or (None) for its transport's."""
        if not self._end_asked:
            self._end_asked, self._end_reason = True, reason

    def _step(self, transport: paramiko.Transport) -> None:
        self._take_opened()
        if self._end_asked:
            return
        starting, kills, closing = self._take_work()
        for index, job in enumerate(starting):
            if not self._launch(transport, job):
                self._return_unstarted(starting[index:])
                self._ask_end(self._agent.ending() if self._agent is not None else None)
                return
        for job in kills + (list(self._running) if closing else []):
            self._send_kill(job)
        for _ in range(len(self._notified)):  # those notified later get the next turn
            ended = self._service(self._notified.popleft())
            if ended is not None:
                self._ask_end(ended)
                return
        if lost(transport) or (closing and not self._running and not self._opening):
            self._ask_end(None)
            return
        if self._reclaimed and self._retire_if_idle():
            self._ask_end("its descriptors went to a host waiting for them")
            return
        self._run_timers()
        if self._alive.silent():
            transport.close()  # nothing more to say over it (no orphan kill: it is frozen)
            self._ask_end(self._alive.given_up(f"{self.target.hostname}:{self.target.port}"))
            return
        silent_agent = self._keep_alive(transport)
        if silent_agent is not None:
            self._ask_end(silent_agent)

    def _retire_if_idle(self) -> bool:
        """Take no more jobs if none is given to this connection; whether so."""
        if self._running or self._opening:
            return False
        with self._lock:
            if self.load or self._pending:
                return False
            self._dead = True
            self.pool.retire_locked(self)
        _log.debug("%s: closing an idle connection: another host waits for descriptors",
                   self.pool.name)
        return True

    def _keep_alive(self, transport: paramiko.Transport) -> str | None:
        """Probe the host and ping its agent when due; why the connection must end if the
        agent said nothing for its silence limit (or garbled its output)."""
        agent = self._agent
        try:
            if self._alive.due():
                probe(transport)
                self._alive.sent()
            if agent is not None:
                agent.ping_if_due()
        except CHANNEL_ERRORS as exc:  # the connection or channel is gone: its close tells
            _log.debug("%s: cannot probe the host or ping its agent: %s", self.target.name, exc)
        return agent.failure if agent is not None else None

    def _take_work(self) -> tuple[list[Job], list[Job], bool]:
        """Jobs to start and to kill, and whether the backend is closing (which refuses the
        jobs not started yet)."""
        refused: list[Job] = []
        with self._lock:
            starting = list(self._pending)
            self._pending.clear()
            kills, self._kills = self._kills, []
            for job in starting:
                job.state = State.DONE if self._closing else State.STARTING
            if self._closing:
                refused, starting = starting, []
                self.load -= len(refused)
            closing = self._closing
        for job in refused:
            job.finish(Outcome(None, transport_error=f"{job.host}: the backend was closed "
                                                     "before the job started"))
        return starting, kills, closing

    def _launch(self, transport: paramiko.Transport, job: Job) -> bool:
        """Start ``job`` through the agent, or have a set-up thread open its channel; False
        when the agent's channel turned out to be gone (nothing was started: the job can go
        elsewhere)."""
        if self._agent is not None:
            return self._launch_through_agent(job)
        self._opening += 1
        self.hub.submit(lambda: self._open_channel(transport, job))
        return True

    def _take_opened(self) -> None:
        """Channel mode: the jobs whose channels a set-up thread has opened (or could not)."""
        while self._opened:
            job, started = self._opened.popleft()
            self._opening -= 1
            if started is None:  # the connection is dead: the job can go elsewhere
                self._return_unstarted([job])
                self._ask_end(None)
            elif isinstance(started, Outcome):
                self._done(job, started)
            else:
                with self._lock:
                    job.channel = started
                    job.state = State.RUNNING
                report_running(job.report)  # its time limit counts from now
                self._running.add(job)
                self._notified.append(job)  # whatever happened before it was watched
                if job.kill_requested or self._closing:
                    self._send_kill(job)

    def _launch_through_agent(self, job: Job) -> bool:
        assert self._agent is not None
        try:
            self._agent.start(job, self.settings.kill_grace)
        except ValueError as exc:
            self._done(job, Outcome(None, transport_error=one_line(
                f"{job.host}: cannot start the job: {exc}")))
            return True
        except CHANNEL_ERRORS:
            return False  # the agent's channel is gone; its close tells why
        with self._lock:
            job.state = State.RUNNING
        self._running.add(job)
        return True

    def _service(self, item: Job | AgentLink) -> str | None:
        """Serve a job's channel, or the agent's (whose end ends the connection: returns why)."""
        if isinstance(item, AgentLink):
            return self._service_agent(item)
        self._service_channel(item)
        return None

    def _service_agent(self, link: AgentLink) -> str | None:
        """Hand the agent's frames to their jobs; report the ended ones."""
        for job, outcome in link.ended_jobs():
            self._done(job, outcome)
        if link.failure is not None:
            return link.failure
        channel = link.channel
        if link.drained():  # the agent is gone: why, unless it went with the connection
            return None if lost(channel.get_transport()) else link.ending()
        if channel.recv_ready() or channel.recv_stderr_ready():
            self.notify(link)  # more than a turn's worth: the rest in the next turn
        return None

    def _service_channel(self, job: Job) -> None:
        """Move a running job's output into its tails; report it once its channel is closed:
        the wrapper's status line, or a one-line transport error."""
        if job.state is not State.RUNNING or job.channel is None:
            return
        if job.serve_channel():
            self._done(job, closed_channel_outcome(job, self._transport, self.target))
        elif job.channel.recv_ready() or job.channel.recv_stderr_ready():
            self.notify(job)  # more than a turn's worth: the rest in the next turn

    def _send_kill(self, job: Job) -> None:
        """A kill frame to the agent, or EOF on the job's stdin for the wrapper: either kills
        the job's process group (TERM, then KILL)."""
        if job.state is not State.RUNNING or job.kill_sent:
            return
        job.kill_sent = True
        try:
            if self._agent is not None:
                self._agent.kill(job.number)
            elif job.channel is not None:
                job.channel.shutdown_write()
        except CHANNEL_ERRORS as exc:  # the channel or connection is gone: its close tells
            _log.debug("%s: cannot send EOF to a killed job: %s", job.host, exc)
        self._timers.add(self.settings.kill_grace + KILL_CONFIRM, job)

    def _run_timers(self) -> None:
        for job in self._timers.pop_due():
            if job.state is State.RUNNING:
                job.close_channel()
                if self._agent is not None:
                    self._agent.forget(job.number)
                waited = self.settings.kill_grace + KILL_CONFIRM
                self._done(job, Outcome(None, transport_error=(
                    f"{job.host}: no answer within {waited:g} s of its kill; given up")))

    def _next_due(self) -> float | None:
        waits = [self._alive.wait_time(self._timers.next_due())]
        if self._agent is not None:
            waits.append(self._agent.pinger.wait_time())
        known = [wait for wait in waits if wait is not None]
        return time.monotonic() + min(known) if known else None

    def _done(self, job: Job, outcome: Outcome) -> None:
        """Free the job's session, then report (a report may start the next job at once)."""
        self._running.discard(job)
        with self._lock:
            job.state = State.DONE
            self.pool.release_locked(self)
        job.finish(outcome)

    def _return_unstarted(self, jobs: list[Job]) -> None:
        with self._lock:
            for job in reversed(jobs):
                job.state = State.PENDING
                self._pending.appendleft(job)

"""One SSH connection to a host, and the thread that serves every job on it.

::

    HostPool.assign_locked(job) --> pending --+
    handle.kill() --------------->  kills ----+--> wake pipe --+
    paramiko's thread: exit status, close --> notified --------+
                                                               v
    connection thread: connect() once; agent mode: start the host agent in one channel
    (.agent: a start frame per job, its frames back, a kill frame); channel mode: a channel
    per job running the wrapper (.channels); select() on the channels' fds and the wake pipe;
    probe the host (and ping its agent) every alive_interval: silent for four, it is given up
    (a frozen host answers no probe, though its kernel answers TCP keepalives)
    connection (or agent) lost: running jobs are transport errors; jobs not started yet move
    (once) to another connection of the host, so a dropped idle connection costs no job

paramiko's own thread per transport fills each channel's buffers; this thread only moves bytes
out of them, so a job that writes a lot cannot stall the others. A channel's fd stays readable
for ever once EOF has arrived, and neither the exit status nor the server's close touches it,
so the channel's ``status_event`` is replaced by one that also wakes this thread. Out of file
descriptors, a job or connection fails saying so (:func:`lofarexec.transport.out_of_descriptors`);
the thread never dies of it.
"""

from __future__ import annotations

import logging
import selectors
import threading
from collections import deque
from typing import TYPE_CHECKING

import paramiko

from lofarexec.backend import Outcome
from lofarexec.transport import KILL_CONFIRM, Pinger, TimerHeap, WakePipe, out_of_descriptors

from .agent import AgentLink, after_agent_link, open_agent
from .channels import closed_channel_outcome, open_job_channel
from .connect import (
    CHANNEL_ERRORS,
    close_transport,
    connect,
    lost,
    lost_reason,
    probe,
    translate,
)
from .jobs import Job, State, one_line

if TYPE_CHECKING:
    from .pool import HostPool

_log = logging.getLogger("lofarexec.paramiko")


class Connection:
    """One transport to ``pool.target`` carrying up to ``sessions`` jobs, served by a thread.

    Methods ending in ``_locked`` are called with ``pool.lock`` held; ``load`` is the number of
    jobs given to this connection and not yet reported, counted by the pool.
    """

    def __init__(self, pool: HostPool, number: int) -> None:
        self.pool = pool
        self.target = pool.target
        self.settings = pool.settings
        self.load = 0
        self._lock = pool.lock
        self._pending: deque[Job] = deque()
        self._kills: list[Job] = []
        # appended by paramiko's thread, without a lock
        self._notified: deque[Job | AgentLink] = deque()
        self._running: set[Job] = set()  # this thread's own
        self._agent: AgentLink | None = None  # agent mode: the host agent's channel
        self._timers: TimerHeap[Job] = TimerHeap()  # killed jobs awaiting their end
        self._dead = self._closing = self._established = False
        self._transport: paramiko.Transport | None = None
        self._alive = Pinger(self.settings.alive_interval)  # the host: probed, heard, given up
        # poll, not epoll: a connection watches a few fds, and epoll costs a descriptor of
        # its own per host (issue 17: descriptors per host bound how many hosts one run takes)
        self._selector = selectors.PollSelector()
        try:
            self._waker = WakePipe()
        except OSError:  # out of descriptors: the pool fails the job, saying so
            self._selector.close()
            raise
        self._selector.register(self._waker, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"paramiko-{self.target.name}-{number}")

    # -- any thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def usable(self) -> bool:
        """Whether new jobs may go here (not dead, not closing, transport not known dead)."""
        transport = self._transport
        alive = transport is None or not self._established or not lost(transport)
        return alive and not (self._dead or self._closing)

    def enqueue_locked(self, job: Job) -> None:
        self._pending.append(job)
        self._wake()

    def request_kill_locked(self, job: Job) -> None:
        if not job.kill_requested:
            job.kill_requested = True
            self._kills.append(job)
            self._wake()

    def forget_pending_locked(self, job: Job) -> None:
        self._pending.remove(job)
        self.load -= 1

    def shutdown(self) -> None:
        """Begin closing: refuse new jobs, kill running ones; abort a handshake in progress."""
        with self._lock:
            self._closing = True
            aborting = self._transport if not self._established else None
            self._wake()
        if aborting is not None:
            aborting.close()  # the thread's connect() fails at once and cleans up

    def join(self) -> None:
        """Wait for the thread, then release the wake pipe; safe twice."""
        if self._thread.ident is not None:
            self._thread.join()
        self._waker.close()

    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def _wake(self) -> None:
        self._waker.wake()

    def _notify(self, item: Job | AgentLink) -> None:
        self._notified.append(item)
        self._wake()

    # -- the connection's thread -----------------------------------------------------------
    def _main(self) -> None:
        try:
            transport = connect(self.target, self.settings, self.pool.known_hosts,
                                self.pool.keys, self._adopt, self._alive.heard)
        except Exception as exc:  # noqa: BLE001 - the edge: anything becomes our error
            error = translate(exc, self.target, "cannot connect to")
            _log.debug("%s", error)
            self._end(str(error), established=False)
            return
        with self._lock:
            self._established = True
        reason = None
        try:
            reason = self._serve(transport)
        except Exception as exc:  # noqa: BLE001 - a bug: fail this host's jobs loudly, not silently
            if out_of_descriptors(exc) is None:
                _log.exception("%s: the paramiko connection thread failed", self.target.name)
            reason = str(translate(exc, self.target, "serving jobs on"))
        self._end(reason or lost_reason(transport, self.target), established=True)

    def _adopt(self, transport: paramiko.Transport) -> None:
        with self._lock:
            self._transport = transport
            if self._closing:
                raise ConnectionAbortedError("the backend was closed while connecting")

    def _serve(self, transport: paramiko.Transport) -> str | None:
        """Serve jobs until the connection ends; why it ended when the transport itself is not
        the reason (the agent's end)."""
        if self.settings.launch == "agent":
            failure = self._start_agent(transport)
            if failure is not None:
                return failure
        while True:
            starting, kills, closing = self._take_work()
            for index, job in enumerate(starting):
                if not self._launch(transport, job):
                    self._return_unstarted(starting[index:])
                    return self._agent.ending() if self._agent is not None else None
            for job in kills + (list(self._running) if closing else []):
                self._send_kill(job)
            while self._notified:
                ended = self._service(self._notified.popleft())
                if ended is not None:
                    return ended
            if lost(transport) or (closing and not self._running):
                return None
            for key, _ in self._selector.select(self._next_timeout()):
                ended = self._waker.drain() if key.data is None else self._service(key.data)
                if ended is not None:
                    return ended
            self._run_timers()
            if self._alive.silent():
                transport.close()  # nothing more to say over it (no orphan kill: it is frozen)
                return self._alive.given_up(f"{self.target.hostname}:{self.target.port}")
            silent_agent = self._keep_alive(transport)
            if silent_agent is not None:
                return silent_agent

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

    def _start_agent(self, transport: paramiko.Transport) -> str | None:
        """Start the host agent in a channel of its own; why not, if it could not be."""
        link = open_agent(transport, self.settings, self.target, self._notify)
        if isinstance(link, str):
            return link
        self._agent = link
        self._selector.register(link.channel.fileno(), selectors.EVENT_READ, link)
        self._notified.append(link)  # whatever happened before we watched its fd
        return None

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
        """Start ``job`` in a new channel, or through the agent; False when the connection
        turned out to be dead (then nothing was started and the job can go elsewhere)."""
        if self._agent is not None:
            return self._launch_through_agent(job)
        started = open_job_channel(transport, job, self.settings, self.target,
                                   lambda: self._notify(job))
        if started is None:
            return False
        if isinstance(started, Outcome):
            self._done(job, started)
            return True
        with self._lock:
            job.channel = started
            job.state = State.RUNNING
        self._running.add(job)
        self._selector.register(started.fileno(), selectors.EVENT_READ, job)
        self._notified.append(job)  # whatever happened before we watched its fd
        return True

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
        if channel.eof_received and channel.fileno() in self._selector.get_map():
            self._selector.unregister(channel.fileno())  # readable for ever; the close tells
        return None

    def _service_channel(self, job: Job) -> None:
        """Move a running job's output into its tails; report it once its channel is closed:
        the wrapper's status line, or a one-line transport error."""
        if job.state is not State.RUNNING or not job.serve_channel(self._selector):
            return
        self._done(job, closed_channel_outcome(job, self._transport, self.target))

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
                job.close_channel(self._selector)
                if self._agent is not None:
                    self._agent.forget(job.number)
                waited = self.settings.kill_grace + KILL_CONFIRM
                self._done(job, Outcome(None, transport_error=(
                    f"{job.host}: no answer within {waited:g} s of its kill; given up")))

    def _next_timeout(self) -> float | None:
        waits = [self._alive.wait_time(self._timers.next_due())]
        if self._agent is not None:
            waits.append(self._agent.pinger.wait_time())
        known = [wait for wait in waits if wait is not None]
        return min(known) if known else None

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

    def _end(self, reason: str, *, established: bool) -> None:
        """The connection is over: report or move its jobs, close everything it holds."""
        moved, failed = [], []
        with self._lock:
            self._dead = True
            self.pool.retire_locked(self)
            running = [job for job in self._running if job.state is State.RUNNING]
            for job in running:
                job.state = State.DONE
                self.pool.release_locked(self)
            while self._pending:
                job = self._pending.popleft()
                self.load -= 1
                problem = None
                if established and not job.requeued and self.pool.accepting_locked():
                    job.requeued = True
                    problem = self.pool.assign_locked(job)
                    if problem is None:
                        moved.append(job)
                        continue
                job.state = State.DONE
                failed.append((job, problem))
            transport = self._transport
        self._running.clear()
        running_failure = self._running_failure(reason)  # before the transport is closed
        for job in running:
            job.close_channel(self._selector)
        if self._agent is not None:  # the jobs whose status the host kept end with it
            running = after_agent_link(self._agent, running, transport, self.pool)
        if transport is not None:
            close_transport(transport)
        self._selector.close()
        if moved:
            _log.info("%s: %s; %d job(s) not started yet moved to a new connection",
                      self.target.name, reason, len(moved))
        for job in running:
            job.finish(job.outcome(None, running_failure))
        unstarted = reason if not self._closing else (
            f"{self.target.name}: the backend was closed before the job started")
        for job, problem in failed:
            job.finish(Outcome(None, transport_error=one_line(problem or unstarted)))

    def _running_failure(self, reason: str) -> str:
        """What a job that was running is told when the connection ends for ``reason``."""
        agent, transport = self._agent, self._transport
        if agent is not None and (not agent.hello or transport is None or not lost(transport)):
            return reason  # the agent's own end (or it never ran): its words say it
        return f"the connection was lost while the job ran ({reason})"

"""The half of a connection that runs outside the hub: its descriptor slot, its set-up (resolve
the host, then, once the hub has seen it connect and exchange keys (:mod:`.dial`), log in and
start the host agent), a channel-mode job's channel, and its end.

Each of these waits for round trips (or for a descriptor slot), so it runs in one of the hub's
set-up threads (:class:`.hub.SetupThreads`), never in the hub's thread nor the scheduler's; a
host that does not answer at all holds none of them (the dial waits on the hub).
:class:`ConnectionSetUp` is the base of :class:`.connection.Connection`, which holds the state
both halves share and serves the connection in the hub's thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import paramiko

from lofarexec.backend import Outcome
from lofarexec.errors import LofarexecError
from lofarexec.transport import Pinger, Slot, descriptor_budget

from .agent import AgentLink, after_agent_link, open_agent
from .channels import open_job_channel
from .connect import authenticated, close_transport, lost, translate
from .dial import Dial
from .jobs import Job, State, one_line

if TYPE_CHECKING:
    from .hosts import Target
    from .hub import Hub
    from .pool import HostPool
    from .settings import ParamikoSettings

_log = logging.getLogger("lofarexec.paramiko")
#: What a connection holds open on the control node: its socket (no channel has a descriptor).
DESCRIPTORS_PER_CONNECTION = 1


class ConnectionSetUp:
    """A connection's descriptor slot, set-up and end (see the module docstring); the state is
    made by :class:`.connection.Connection`."""

    pool: HostPool
    hub: Hub
    settings: ParamikoSettings
    load: int
    _lock: threading.Lock
    _pending: deque[Job]
    _notified: deque[Job | AgentLink]
    _opened: deque[tuple[Job, paramiko.Channel | Outcome | None]]
    _running: set[Job]
    _agent: AgentLink | None
    _dead: bool
    _closing: bool
    _established: bool
    _serving: bool
    _transport: paramiko.Transport | None
    _alive: Pinger
    _started: bool
    _ended: threading.Event
    _slot: Slot | None
    _dial: Dial | None
    _open_once: threading.Lock
    _open_submitted: bool
    _reclaimed: bool

    @property
    def target(self) -> Target:
        return self.pool.target

    def start(self) -> None:
        """Connect in a set-up thread once the process's descriptor budget has room for it
        (:func:`lofarexec.transport.descriptor_budget`): beyond it, the connection and its
        jobs wait, until another host's connection closes; the hub serves it once it is up."""
        self._started = True
        budget = descriptor_budget()
        slot = self._slot = budget.slot(DESCRIPTORS_PER_CONNECTION)
        slot.request(granted=self._granted, reclaim=self._reclaim)
        if slot.state == "waiting":
            _log.debug("%s: waiting for file descriptors (%d host connection(s) waiting)",
                       self.pool.name, budget.waiting)

    def _granted(self) -> None:
        """The descriptors are ours (any thread, perhaps under a pool's lock): connect."""
        with self._open_once:
            if self._open_submitted:
                return
            self._open_submitted = True
        self.hub.submit(self._open)

    def _reclaim(self) -> None:
        """Another host waits for descriptors (any thread): close once no job is left here."""
        self._reclaimed = True
        self.hub.poke(self)

    def notify(self, item: Job | AgentLink) -> None:
        """``item``'s channel has something to read, or its status or close came (called in
        paramiko's thread, under the channel's lock: only a deque append and a wake-up)."""
        self._notified.append(item)
        self.hub.poke(self)

    # -- a set-up thread -------------------------------------------------------------------
    def _open(self) -> None:
        """Resolve the host and begin connecting (:meth:`_set_up`); once connected (in the
        hub), :meth:`_log_in`, then the hub serves the connection."""
        self._guarded(self._set_up)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run ``step``; whatever goes wrong, the connection ends (its jobs are told why):
        none is left that :meth:`join` would wait for in vain."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a bug: this host's jobs fail loudly
            _log.exception("%s: setting up a paramiko connection failed", self.pool.name)
            if not self._serving and not self._ended.is_set():
                self._end(one_line(f"{self.pool.name}: cannot connect: {exc!r}"),
                          established=self._established)

    def _set_up(self) -> None:
        try:
            target = self.target  # the host's ssh config entry, resolved here once per host
        except LofarexecError as exc:
            self._end(one_line(str(exc)), established=False)
            return
        dial = Dial(target, self.settings, self.hub, self.pool.known_hosts, self._alive.heard,
                    self._adopt, self._dialed)
        with self._lock:
            closing = self._closing
            self._dial = None if closing else dial
        if closing:  # closed while this waited for a set-up thread: connect nowhere
            self._end("the backend was closed", established=False)
            return
        dial.begin()  # the hub waits for the TCP connect and the key exchange (.dial)

    def _dialed(self, result: paramiko.Transport | BaseException) -> None:
        """The hub's thread: the key exchange is done (or failed); the rest waits for the
        host's answers, so it runs in a set-up thread."""
        self.hub.submit(lambda: self._guarded(lambda: self._log_in(result)))

    def _log_in(self, result: paramiko.Transport | BaseException) -> None:
        """Check the host key, authenticate, start the agent; then the hub serves the
        connection. On failure the connection ends (:meth:`_finish` closes the transport)."""
        target = self.target
        try:
            if isinstance(result, BaseException):
                raise result
            authenticated(result, target, self.pool.known_hosts, self.pool.keys)
        except Exception as exc:  # noqa: BLE001 - the edge: anything becomes our error
            error = translate(exc, target, "cannot connect to")
            _log.debug("%s", error)
            self._end(str(error), established=False)
            return
        with self._lock:
            self._established = True
        failure = None
        if self.settings.launch == "agent":
            try:
                failure = self._start_agent(result)
            except Exception as exc:  # noqa: BLE001 - a bug: this host's jobs fail loudly
                _log.exception("%s: starting the host agent failed", target.name)
                failure = str(translate(exc, target, "cannot start the agent on"))
        if failure is not None:
            self._end(failure, established=True)
            return
        self._serving = True
        self.hub.poke(self)

    def _adopt(self, transport: paramiko.Transport) -> None:
        with self._lock:
            self._transport = transport
            if self._closing:
                raise ConnectionAbortedError("the backend was closed while connecting")

    def _start_agent(self, transport: paramiko.Transport) -> str | None:
        """Start the host agent in a channel of its own; why not, if it could not be."""
        link = open_agent(transport, self.settings, self.target, self.notify)
        if isinstance(link, str):
            return link
        self._agent = link
        self._notified.append(link)  # whatever happened before it was watched
        return None

    def _open_channel(self, transport: paramiko.Transport, job: Job) -> None:
        """Channel mode: open ``job``'s channel and start it (round trips), then tell the hub."""
        try:
            started = open_job_channel(transport, job, self.settings, self.target,
                                       lambda: self.notify(job))
        except Exception as exc:  # noqa: BLE001 - a bug: this job fails loudly, not silently
            _log.exception("%s: opening a job's channel failed", self.target.name)
            started = Outcome(None, transport_error=str(translate(exc, self.target,
                                                                  "cannot start the job on")))
        self._opened.append((job, started))
        self.hub.poke(self)

    # -- a set-up thread, once the hub is done with the connection ----------------------------
    def _end(self, reason: str, *, established: bool) -> None:
        """The connection is over: report or move its jobs, close everything it holds."""
        try:
            self._finish(reason, established=established)
        finally:
            if self._slot is not None:
                self._slot.release()  # its socket is closed: a waiting host may connect
            self._ended.set()

    def _finish(self, reason: str, *, established: bool) -> None:
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
            job.close_channel()
        if self._agent is not None:  # the jobs whose status the host kept end with it
            running = after_agent_link(self._agent, running, transport, self.pool)
        if transport is not None:
            close_transport(transport)
        if moved:
            _log.info("%s: %s; %d job(s) not started yet moved to a new connection",
                      self.pool.name, reason, len(moved))
        for job in running:
            job.finish(job.outcome(None, running_failure))
        unstarted = reason if not self._closing else (
            f"{self.pool.name}: the backend was closed before the job started")
        for job, problem in failed:
            job.finish(Outcome(None, transport_error=one_line(problem or unstarted)))

    def _running_failure(self, reason: str) -> str:
        """What a job that was running is told when the connection ends for ``reason``."""
        agent, transport = self._agent, self._transport
        if agent is not None and (not agent.hello or transport is None or not lost(transport)):
            return reason  # the agent's own end (or it never ran): its words say it
        return f"the connection was lost while the job ran ({reason})"

"""Jobs and the connections of one host: which connection runs a job, and how a kill reaches it.

A :class:`HostPool` holds a host's connections. A job goes to the first live connection with
fewer than ``sessions`` jobs; when none has room, a new connection is opened next to the
others, so the server's MaxSessions is never exceeded. Queued jobs never reach the pool (the
scheduler holds them, a few bytes each): only started ones do, and the scheduler bounds those
by ``max_per_node``. One lock per host guards the pool, its connections' job lists and every
job's state; nothing calls paramiko or a report callback while holding it (paramiko calls back
into us under its own channel locks, and a report may start the next job at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lofarexec.backend import Outcome

from .connection import Connection
from .hosts import Target
from .hub import Hub
from .jobs import Job, State

if TYPE_CHECKING:
    from .connect import KeyCache
    from .hosts import KnownHosts
    from .settings import ParamikoSettings

class ChannelJobHandle:
    """What :meth:`ParamikoBackend.start` returns: ``kill()`` reaches the job's connection."""

    __slots__ = ("_job", "_pool")
    starts_later = True  # it waits for a connection: report_running says when it runs

    def __init__(self, pool: HostPool, job: Job) -> None:
        self._pool = pool
        self._job = job

    def kill(self) -> None:
        self._pool.kill(self._job)


class HostPool:
    """The connections to one host, and the jobs each carries.

    ``target`` is the host as its ssh config resolves it, or a function that resolves it: then
    it is called once, by the first connection's set-up thread (never the scheduler's thread:
    a config of many Host blocks costs a scan of them all per host). ``hub`` serves the
    connections (:mod:`.hub`); a pool given none makes its own, closed by :func:`close_pools`.
    """

    def __init__(self, target: Target | Callable[[], Target], settings: ParamikoSettings,
                 known_hosts: KnownHosts, keys: KeyCache, hub: Hub | None = None,
                 name: str | None = None) -> None:
        if isinstance(target, Target):
            self._target: Target | None = target
            self._resolve: Callable[[], Target] | None = None
            self.name = target.name
        else:
            self._target, self._resolve = None, target
            self.name = name or "?"
        self._resolved = threading.Lock()
        self.settings = settings
        self.known_hosts = known_hosts
        self.keys = keys
        self.owns_hub = hub is None
        self.hub = hub if hub is not None else Hub()
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self._every_connection: list[Connection] = []
        self._opened = 0
        self._closed = False

    @property
    def target(self) -> Target:
        """The host as the ssh config resolves it (resolved on first use; its
        :class:`~lofarexec.errors.ConfigError` again on each use, if it cannot be)."""
        if self._target is None:
            with self._resolved:
                if self._target is None:
                    assert self._resolve is not None
                    self._target = self._resolve()
        return self._target

    def submit(self, job: Job) -> None:
        """Give ``job`` to a connection with room (opening one if need be); never blocks."""
        with self.lock:
            problem = f"{job.host}: the backend is closed"
            if not self._closed:
                problem = self.assign_locked(job)
                if problem is None:
                    return
            job.state = State.DONE
        job.finish(Outcome(None, transport_error=problem))

    def assign_locked(self, job: Job) -> str | None:
        """Put ``job`` on the first live connection with room, or on a new one (only while
        :meth:`accepting_locked`); why not, when no new one can be made: then the caller
        reports the job."""
        unlimited = self.settings.launch == "agent"  # one channel carries all its jobs
        for connection in self.connections:
            if connection.usable() and (unlimited or connection.load < self.settings.sessions):
                break
        else:
            connection = Connection(self, self._opened + 1)
            self._opened += 1
            self.connections.append(connection)
            self._prune_finished_locked()
            self._every_connection.append(connection)
            connection.start()
        connection.load += 1
        job.connection = connection
        job.state = State.PENDING
        connection.enqueue_locked(job)
        return None

    def kill(self, job: Job) -> None:
        """A job not started yet ends here and now; a running one is killed by the hub."""
        with self.lock:
            connection = job.connection
            if connection is None or job.state is State.DONE:
                return
            if job.state is not State.PENDING:
                connection.request_kill_locked(job)
                return
            connection.forget_pending_locked(job)
            job.state = State.DONE
        job.finish(Outcome(None, transport_error=f"{job.host}: killed before it started"))

    def accepting_locked(self) -> bool:
        """Whether jobs may still be given to connections (not after :meth:`close` began, so
        that the connections it stops are all there are)."""
        return not self._closed

    def release_locked(self, connection: Connection) -> None:
        """A job of ``connection`` ended: its session is free for the next job."""
        connection.load -= 1

    def retire_locked(self, connection: Connection) -> None:
        """``connection`` is dead: new jobs go elsewhere (it is joined at close)."""
        if connection in self.connections:
            self.connections.remove(connection)

    def close(self) -> None:
        """Stop every connection (they kill their jobs first), then wait for their ends."""
        close_pools([self])

    def begin_close(self) -> list[Connection]:
        """Refuse new jobs and tell every connection to stop; the connections to join."""
        with self.lock:
            self._closed = True
            connections = list(self._every_connection)
        for connection in connections:
            connection.shutdown()
        return connections

    def connection_count(self) -> int:
        """How many connections were ever opened to this host (for tests and reports)."""
        with self.lock:
            return self._opened

    def _prune_finished_locked(self) -> None:
        """Drop the connections that have ended, so a host that reconnects all run long keeps
        no list that grows with it."""
        for connection in [c for c in self._every_connection if c.finished()]:
            connection.join()
            self._every_connection.remove(connection)


def close_pools(pools: list[HostPool]) -> None:
    """Close many hosts at once: every connection is told to stop before any is waited for,
    so N hosts take about as long as the slowest one, not the sum of all (issue 17)."""
    connections = [connection for pool in pools for connection in pool.begin_close()]
    for connection in connections:
        connection.join()
    for hub in {id(pool.hub): pool.hub for pool in pools if pool.owns_hub}.values():
        hub.close()

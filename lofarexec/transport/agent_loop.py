"""One thread that serves every host agent's pipes and timers (issue 17).

An :class:`AgentLoop` is shared by the :class:`~lofarexec.transport.agent.AgentClient`\\ s of
an :class:`~lofarexec.transport.agent_pool.AgentPool` (one per backend), so that the control
node's threads do not grow with its hosts: one selector thread for every host's pipes, plus a
few workers for the slow, blocking chores (starting a host's local program, waiting for it to
end, killing orphans over a new session), which must not stall the other hosts::

    any thread: client.start()/kill() -> loop.poke(client) -----+
    worker:     client launched       -> loop.attach(client) ---+--> wake
                                                                 v
    the loop's thread: select() on every client's channel (its program's stdin and stdout)
    and stderr; each poked client serviced (requests taken, frames written); timers (pings, silence,
    kills unanswered) from one heap; a client whose streams ended -> a worker runs its end
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from lofarexec.transport.wakeup import WakePipe

if TYPE_CHECKING:
    from lofarexec.transport.agent import AgentClient

#: Workers for blocking chores; a fixed number, however many hosts.
CHORE_WORKERS = 4
_log = logging.getLogger("lofarexec.transport.agent")


class AgentLoop:
    """The selector thread (started with the first client) and the chore workers."""

    def __init__(self, name: str = "agents") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._waker = WakePipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._waker, selectors.EVENT_READ, None)
        self._attached: list[AgentClient] = []
        self._poked: set[AgentClient] = set()
        self._clients: set[AgentClient] = set()  # the thread's own
        self._timers: list[tuple[float, int, AgentClient]] = []  # the thread's own
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._ident: int | None = None  # the thread's
        self._stopping = False
        self._chores = ThreadPoolExecutor(CHORE_WORKERS, thread_name_prefix=f"{name}-chore")

    # -- any thread ------------------------------------------------------------------------
    def chore(self, work: Callable[[], None]) -> None:
        """Run ``work`` on a worker (it may block); an exception is logged, not lost."""
        self._chores.submit(self._logged, work)

    def attach(self, client: AgentClient) -> None:
        """Serve ``client``, whose local program now runs."""
        with self._lock:
            self._attached.append(client)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()
        self._waker.wake()

    def poke(self, client: AgentClient) -> None:
        """``client`` has requests for the loop's thread (which, poking itself, e.g. starting a
        host's next job from a job's end, serves them before it waits again: no wake-up)."""
        with self._lock:
            self._poked.add(client)
        if threading.get_ident() != self._ident:
            self._waker.wake()

    def close(self) -> None:
        """Stop the thread and the workers, once every client ended; safe twice."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._waker.wake()
        if thread is not None:
            thread.join()
        self._chores.shutdown(wait=True)
        with self._lock:
            if self._waker.fileno() >= 0:
                self._selector.close()
                self._waker.close()

    @staticmethod
    def _logged(work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # a chore's bug must not pass unseen in a worker
            _log.exception("agent chore failed")

    # -- the loop's thread -----------------------------------------------------------------
    def register(self, fileobj: object, events: int, data: tuple[AgentClient, str]) -> None:
        self._selector.register(fileobj, events, data)  # type: ignore[arg-type]

    def unregister(self, fileobj: object) -> None:
        self._selector.unregister(fileobj)  # type: ignore[arg-type]

    def modify(self, fileobj: object, events: int, data: tuple[AgentClient, str]) -> None:
        self._selector.modify(fileobj, events, data)  # type: ignore[arg-type]

    def schedule(self, client: AgentClient, due: float) -> None:
        """Call ``client._on_timer(due)`` at the monotonic moment ``due``."""
        heapq.heappush(self._timers, (due, next(self._order), client))

    def detach(self, client: AgentClient, end: Callable[[], None]) -> None:
        """``client``'s streams ended: forget it here, run ``end`` on a worker."""
        self._clients.discard(client)
        self.chore(end)

    def _run(self) -> None:
        self._ident = threading.get_ident()
        while True:
            with self._lock:
                attached, self._attached = self._attached, []
                poked, self._poked = self._poked, set()
                stopping = self._stopping
            for client in attached:
                self._clients.add(client)
                self._call(client._attached)
            for client in poked:
                if client in self._clients:
                    self._call(client._service)
            if stopping and not self._clients and not self._attached:
                return
            for key, events in self._selector.select(self._timeout()):
                if key.data is None:
                    self._waker.drain()
                else:
                    client, which = key.data
                    self._call(client._ready, which, events)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                due, _, client = heapq.heappop(self._timers)
                if client in self._clients:
                    self._call(client._on_timer, due)

    @staticmethod
    def _call(step: Callable[..., None], *args: object) -> None:
        """One client's step; its failure (a report callback that raised) is logged, and
        the loop goes on serving every other host."""
        try:
            step(*args)
        except Exception:
            _log.exception("serving a host agent failed")

    def _timeout(self) -> float | None:
        if self._poked:  # poked by this thread while serving: no wake-up is coming
            return 0.0
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

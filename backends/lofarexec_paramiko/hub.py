"""One thread that serves every connection of a backend, and a few that do what blocks.

::

    paramiko's thread (one per host): data, exit status, close --> connection.notify(item) --+
    HostPool: a job to start or to kill ------------------------> hub.poke(connection) ------+
                                                                                              v
    hub thread: each poked connection takes a turn (start jobs, send kills, move output into
      the jobs' tails, report ended jobs); the connections' next moments (kill confirmations,
      probes, agent pings) in one heap; in between it sleeps in poll() on one eventfd, the
      only descriptor the backend holds besides each host's socket; and on the sockets still
      connecting (.dial: a silent host holds no thread while it is waited for)
    set-up threads (at most SETUP_THREADS at work, plus those stalled longer than
      STALL_SECONDS; gone when idle): what waits for round trips: resolving a host,
      authenticating, starting its agent, a job's channel (channel mode), the end of a
      connection

Issue 17: a thread per connection cost a thread per host under one interpreter lock, and a pipe
per watched channel; here threads are paramiko's one per host plus a constant number, and no
channel has a descriptor (paramiko's buffers call back instead).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from lofarexec.transport import WakePipe

#: Most set-up threads at work at once (connections beyond wait for one), stalled ones aside.
SETUP_THREADS = 16
#: Seconds after which a set-up task still at work counts as stalled (a host that answered the
#: key exchange and then went quiet, e.g. its account lookup hangs in authentication): it no
#: longer holds one of the SETUP_THREADS, so hosts queued behind it are not held up for its
#: whole timeout.
STALL_SECONDS = 1.0
#: Most set-up threads in all, stalled ones included.
MAX_SETUP_THREADS = 256
#: Seconds a set-up thread waits for work before it ends.
IDLE_SECONDS = 2.0
_log = logging.getLogger("lofarexec.paramiko")


class Served(Protocol):
    """What the hub serves: a connection (:class:`.connection.Connection`)."""

    due: float | None
    """The monotonic moment of its next scheduled turn, kept by the hub."""

    def turn(self) -> float | None:
        """Do whatever is pending; the monotonic moment it must be served again by, if any."""


class SetupThreads:
    """Runs blocking tasks on at most ``limit`` threads at work, started when needed and ended
    when idle, so that set-up of many hosts runs side by side without a thread per host.

    A task at work for STALL_SECONDS or more no longer counts against ``limit``: queued tasks
    then get threads of their own (up to MAX_SETUP_THREADS in all). Who notices that moment:
    the hub, at :attr:`check_at` (it calls :meth:`recheck`); ``on_check`` wakes it to look."""

    def __init__(self, limit: int = SETUP_THREADS,
                 on_check: Callable[[], None] = lambda: None) -> None:
        self._limit = limit
        self._on_check = on_check
        self._tasks: deque[Callable[[], None]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._threads: set[threading.Thread] = set()
        self._started: dict[threading.Thread, float] = {}  # a thread at work: its task's start
        self._waiting = 0
        self._closing = False
        self._numbers = itertools.count(1)
        #: When queued tasks should next be looked at again (monotonic), or None; read
        #: without the lock by the hub's thread.
        self.check_at: float | None = None

    def submit(self, task: Callable[[], None]) -> None:
        with self._ready:
            self._tasks.append(task)
            self._admit(time.monotonic())

    def recheck(self) -> None:
        """Give queued tasks the threads that stalled tasks no longer count for (the hub's
        thread, at :attr:`check_at`)."""
        with self._ready:
            self._admit(time.monotonic())

    def close(self) -> None:
        """Let the queued tasks run, then end every thread and wait for them; safe twice."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    def _admit(self, now: float) -> None:
        """Wake idle threads for the queued tasks and start more while fewer than ``limit``
        are at work on tasks younger than STALL_SECONDS (under the lock)."""
        queued = len(self._tasks)
        if self._waiting:
            self._ready.notify(min(queued, self._waiting))
        young = [start for start in self._started.values() if now - start < STALL_SECONDS]
        room = max(0, min(queued - self._waiting, self._limit - len(young) - self._waiting,
                          MAX_SETUP_THREADS - len(self._threads)))
        for _ in range(room):
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"paramiko-setup-{next(self._numbers)}")
            self._threads.add(thread)
            self._started[thread] = now  # at work from now: it takes a task once it runs
            thread.start()
            young.append(now)
        if queued > self._waiting + room and young and len(self._threads) < MAX_SETUP_THREADS:
            self.check_at = min(young) + STALL_SECONDS
            self._on_check()
        else:
            self.check_at = None

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._ready:
                self._started.pop(me, None)
                while not self._tasks and not self._closing:
                    self._waiting += 1
                    woken = self._ready.wait(IDLE_SECONDS)
                    self._waiting -= 1
                    if not woken and not self._tasks:
                        break
                if not self._tasks:
                    self._threads.discard(me)
                    return
                task = self._tasks.popleft()
                self._started[me] = time.monotonic()
            try:
                task()
            except Exception:  # noqa: BLE001 - a bug: logged; the thread serves other hosts
                _log.exception("a paramiko set-up task failed")


class Hub:
    """The backend's one serving thread (started by the first :meth:`poke`) and its set-up
    threads. Any thread may :meth:`poke` or :meth:`submit`; only the hub's thread calls
    :meth:`Served.turn`."""

    def __init__(self) -> None:
        self._waker = WakePipe()
        self.setup = SetupThreads(on_check=self._wake)
        self._poked: deque[Served] = deque()
        self._timers: list[tuple[float, int, Served]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._poller = select.poll()
        self._to_watch: deque[tuple[socket.socket, Served]] = deque()
        self._watched: dict[int, Served] = {}  # the hub's own: sockets polled for writing

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` in a set-up thread (it may block for round trips)."""
        self.setup.submit(task)

    def poke(self, served: Served) -> None:
        """Give ``served`` a turn soon (from any thread; never blocks, takes no lock that
        paramiko's thread could be waiting for)."""
        self._poked.append(served)
        if self._thread is None:
            self._start()
        self._waker.wake()

    def _wake(self) -> None:
        """Have the hub's thread look at the set-up threads' :attr:`SetupThreads.check_at`."""
        if self._thread is None:
            self._start()
        self._waker.wake()

    def watch(self, sock: socket.socket, served: Served) -> None:
        """Give ``served`` a turn once ``sock`` (connecting) is writable or failed, from any
        thread; :meth:`unwatch` it, in the hub's thread, before the socket is closed."""
        self._to_watch.append((sock, served))
        self.poke(served)

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (the hub's thread only; before it is closed or handed on)."""
        if self._watched.pop(sock.fileno(), None) is not None:
            self._poller.unregister(sock.fileno())

    def close(self) -> None:
        """Stop the thread (once every connection has ended) and the set-up threads; safe
        twice."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._waker.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.setup.close()
        self._waker.close()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._main, daemon=True,
                                                name="paramiko-hub")
                self._thread.start()

    def _main(self) -> None:
        self._poller.register(self._waker.fileno(), select.POLLIN)
        while True:
            self._waker.drain()
            if self._stopping:  # read after the drain: a close() that woke us just before
                return          # it would otherwise leave us asleep until the next timer
            self._register_watched()
            self._serve_poked()
            self._serve_due()
            check_at = self.setup.check_at
            if check_at is not None and check_at <= time.monotonic():
                self.setup.recheck()
            if not self._poked:
                timeout = self._timeout()
                self._poll(None if timeout is None else max(0, int(timeout * 1000 + 1)))
            elif self._watched:  # more work already: a look at the sockets, without waiting
                self._poll(0)

    def _register_watched(self) -> None:
        while self._to_watch:
            sock, served = self._to_watch.popleft()
            if sock.fileno() >= 0:  # not closed by a turn before it was registered
                self._watched[sock.fileno()] = served
                self._poller.register(sock.fileno(), select.POLLOUT)

    def _poll(self, milliseconds: int | None) -> None:
        for fd, _ in self._poller.poll(milliseconds):
            served = self._watched.pop(fd, None)
            if served is not None:  # connected or failed: its turn tells which
                self._poller.unregister(fd)
                self._poked.append(served)

    def _serve_poked(self) -> None:
        turns: dict[int, Served] = {}
        while self._poked:
            served = self._poked.popleft()
            turns[id(served)] = served
        for served in turns.values():
            self._turn(served)

    def _serve_due(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            due, _, served = heapq.heappop(self._timers)
            if served.due == due:
                served.due = None
                self._turn(served)

    def _turn(self, served: Served) -> None:
        try:
            due = served.turn()
        except Exception:  # noqa: BLE001 - a bug in one connection: logged, others go on
            _log.exception("a paramiko connection's turn failed")
            return
        if due is not None and (served.due is None or due < served.due):
            served.due = due
            heapq.heappush(self._timers, (due, next(self._order), served))

    def _timeout(self) -> float | None:
        moments = [moment for moment in (self.setup.check_at,
                                         self._timers[0][0] if self._timers else None)
                   if moment is not None]
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

"""Things due later, for a thread that sleeps in ``select``/``epoll``/``wait`` until the next one.

Every transport thread keeps some: a kill's TERM-then-KILL, a kill that got no answer, a step
that did not end after EOF. :class:`TimerHeap` is the one heap of them: the thread asks
:meth:`~TimerHeap.next_timeout` how long it may sleep and takes what is due with
:meth:`~TimerHeap.pop_due`. It is not locked: one thread owns it, or its owner locks it.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Timer(Generic[Item]):
    """One entry of a :class:`TimerHeap`; :meth:`cancel` keeps it from ever coming due."""

    __slots__ = ("cancelled", "due", "item")

    def __init__(self, due: float, item: Item) -> None:
        self.due = due
        self.item = item
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHeap(Generic[Item]):
    """Items due at moments on the monotonic clock, taken in order of their moment (and, for
    equal moments, in the order they were added)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer[Item]]] = []
        self._order = itertools.count()

    def add(self, delay: float, item: Item) -> Timer[Item]:
        """Make ``item`` due ``delay`` seconds from now; the entry can be cancelled."""
        timer = Timer(time.monotonic() + delay, item)
        heapq.heappush(self._heap, (timer.due, next(self._order), timer))
        return timer

    def pop_due(self, now: float | None = None) -> list[Item]:
        """Take the items due by ``now`` (default: the monotonic clock's now), earliest first."""
        now = time.monotonic() if now is None else now
        due = []
        while self._heap and self._heap[0][0] <= now:
            timer = heapq.heappop(self._heap)[2]
            if not timer.cancelled:
                due.append(timer.item)
        return due

    def next_timeout(self, now: float | None = None) -> float | None:
        """Seconds until the next item is due (0 if one is), or None when nothing waits."""
        self._drop_cancelled()
        if not self._heap:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self._heap[0][0] - now)

    def next_due(self) -> float | None:
        """The monotonic moment the next item is due, or None when nothing waits."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        self._drop_cancelled()
        return sum(not timer.cancelled for _, _, timer in self._heap)

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

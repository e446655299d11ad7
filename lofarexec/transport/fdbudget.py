"""The control node's descriptor budget: hosts beyond it wait for a slot instead of failing.

Each host a transport keeps a link to holds a few file descriptors here for the whole run
(pipes to its ``ssh``, a socket to its sshd). With the open-files soft limit at 1024, or lower,
hundreds of hosts would run out of descriptors and fail their jobs (EMFILE). A transport asks
the process's one :class:`DescriptorBudget` for a :class:`Slot` before it opens a host's link,
and gives it back when the link is closed; a host whose slot is not granted yet waits, its jobs
queued, until another host gives one back (issue 17).

How a backend uses it (the ssh and cmdline agents do so through
:class:`~lofarexec.transport.agent_pool.AgentPool`)::

    budget = descriptor_budget()                # the process's budget, made at first use
    slot = budget.slot(cost=3)                  # what the host's link holds open here
    slot.request(granted=open_the_link,         # called at once if there is room, else later
                 reclaim=close_when_idle)       # from the thread that gave a slot back
    ...
    slot.release()                              # the link is closed (or was never opened);
                                                # safe twice, and before it was granted

``granted`` runs in the thread that called :meth:`Slot.request` or in one that called
:meth:`Slot.release` (keep it short: hand the opening to a worker). ``reclaim`` is called,
once per slot, when another host is waiting: the holder should close its link as soon as it
has no job running or queued (a link with work keeps its slot), then release. A thread that
may block instead calls :meth:`Slot.wait` after requesting without ``granted``.

The budget is what the soft limit leaves after the descriptors open when it is made and a
reserve (:data:`RESERVE_FRACTION` of the limit, at least :data:`MIN_RESERVE`) for what is not
budgeted: log connections of running jobs, short-lived processes, files. At least one slot is
always granted when none is held, however small the budget. The run raises the soft limit to
the hard one before its backend opens (:func:`lofarexec.run.runner.raise_open_files_limit`);
the budget reads the limit in force when it is made.
"""

from __future__ import annotations

import collections
import os
import resource
import threading
from collections.abc import Callable

#: Part of the soft limit kept out of the budget, and its least number of descriptors.
RESERVE_FRACTION = 0.25
MIN_RESERVE = 32


class Slot:
    """A host's claim on ``cost`` descriptors of a :class:`DescriptorBudget`."""

    __slots__ = ("_budget", "_granted_call", "_reclaim", "asked", "cost", "state")

    def __init__(self, budget: DescriptorBudget, cost: int) -> None:
        self._budget = budget
        self.cost = cost
        self.state = "new"  # -> "waiting" -> "granted" -> "released"; or "new" -> "released"
        self._granted_call: Callable[[], None] | None = None
        self._reclaim: Callable[[], None] | None = None
        self.asked = False  # reclaim was called

    def request(self, granted: Callable[[], None] | None = None,
                reclaim: Callable[[], None] | None = None) -> None:
        """Ask for the descriptors: ``granted()`` is called when they are this slot's (at once
        when there is room); ``reclaim()`` when another host waits for some."""
        self._granted_call, self._reclaim = granted, reclaim
        self._budget._request(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until granted (or released); whether it was granted."""
        return self._budget._wait(self, timeout)

    def release(self) -> None:
        """Give the descriptors back (or stop waiting for them); safe twice."""
        self._budget._release(self)

    @property
    def granted(self) -> bool:
        return self.state == "granted"


class DescriptorBudget:
    """Counts the descriptors held by hosts' links against ``capacity`` (None: no limit);
    slots that do not fit wait in the order they asked."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiting: collections.deque[Slot] = collections.deque()
        self._holders: set[Slot] = set()
        self._changed = threading.Condition()

    def slot(self, cost: int) -> Slot:
        """A claim on ``cost`` descriptors, not requested yet."""
        return Slot(self, cost)

    @property
    def waiting(self) -> int:
        """How many slots wait for descriptors."""
        return len(self._waiting)

    def _fits(self, slot: Slot) -> bool:
        return self.capacity is None or self.used == 0 or self.used + slot.cost <= self.capacity

    def _request(self, slot: Slot) -> None:
        with self._changed:
            if slot.state != "new":
                return
            if not self._waiting and self._fits(slot):
                self._grant(slot)
                granted, ask = [slot], []
            else:
                slot.state = "waiting"
                self._waiting.append(slot)
                granted, ask = [], self._to_ask()
        self._tell(granted, ask)

    def _release(self, slot: Slot) -> None:
        with self._changed:
            if slot.state == "waiting":
                self._waiting.remove(slot)
            elif slot.state == "granted":
                self.used -= slot.cost
                self._holders.discard(slot)
            slot.state = "released"
            granted = []
            while self._waiting and self._fits(self._waiting[0]):
                granted.append(self._grant(self._waiting.popleft()))
            ask = self._to_ask() if self._waiting else []
            self._changed.notify_all()
        self._tell(granted, ask)

    def _wait(self, slot: Slot, timeout: float | None) -> bool:
        with self._changed:
            self._changed.wait_for(lambda: slot.state in ("granted", "released"), timeout)
            return slot.state == "granted"

    def _grant(self, slot: Slot) -> Slot:
        slot.state = "granted"
        self.used += slot.cost
        self._holders.add(slot)
        self._changed.notify_all()
        return slot

    def _to_ask(self) -> list[Slot]:
        """Holders not yet asked to give their slot back (someone waits)."""
        ask = [slot for slot in self._holders if not slot.asked and slot._reclaim is not None]
        for slot in ask:
            slot.asked = True
        return ask

    @staticmethod
    def _tell(granted: list[Slot], ask: list[Slot]) -> None:
        """Call back outside the lock (a callback may request or release slots)."""
        for slot in granted:
            if slot._granted_call is not None:
                slot._granted_call()
        for slot in ask:
            if slot._reclaim is not None:
                slot._reclaim()


_budget: DescriptorBudget | None = None
_budget_lock = threading.Lock()


def descriptor_budget() -> DescriptorBudget:
    """The process's budget, sized at first use from the open-files soft limit in force."""
    global _budget
    with _budget_lock:
        if _budget is None:
            _budget = DescriptorBudget(budget_capacity())
        return _budget


def budget_capacity(soft_limit: int | None = None, open_now: int | None = None) -> int | None:
    """Descriptors the hosts' links may hold: the soft limit less those open now and the
    reserve; None when the limit is infinite."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return None
    if open_now is None:
        open_now = _open_descriptors()
    reserve = max(MIN_RESERVE, int(soft_limit * RESERVE_FRACTION))
    return max(0, soft_limit - open_now - reserve)


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: assume a small start
        return 16


__all__ = ["MIN_RESERVE", "RESERVE_FRACTION", "DescriptorBudget", "Slot", "budget_capacity",
           "descriptor_budget"]

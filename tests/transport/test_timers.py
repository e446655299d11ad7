"""TimerHeap: the one heap of things due later that every transport thread keeps."""

from __future__ import annotations

import time

from lofarexec.transport import TimerHeap


def test_items_come_due_in_order_of_their_moment_then_of_adding():
    timers: TimerHeap[str] = TimerHeap()
    now = time.monotonic()
    timers.add(2.0, "late")
    timers.add(1.0, "first")
    timers.add(1.0, "second")
    assert timers.pop_due(now) == []
    assert timers.pop_due(now + 1.5) == ["first", "second"]
    assert timers.pop_due(now + 10) == ["late"]
    assert timers.pop_due(now + 20) == []


def test_next_timeout_counts_down_to_the_earliest_and_is_none_when_empty():
    timers: TimerHeap[int] = TimerHeap()
    assert timers.next_timeout() is None
    assert timers.next_due() is None
    timers.add(5.0, 1)
    timers.add(3.0, 2)
    now = time.monotonic()
    assert 2.9 < timers.next_timeout(now) <= 3.0  # type: ignore[operator]
    assert timers.next_timeout(now + 4) == 0.0  # overdue: no negative waits
    assert timers.next_due() == timers.next_timeout(0.0)


def test_a_cancelled_item_never_comes_due_and_does_not_shorten_the_wait():
    timers: TimerHeap[str] = TimerHeap()
    now = time.monotonic()
    early = timers.add(1.0, "cancelled")
    timers.add(3.0, "kept")
    early.cancel()
    assert len(timers) == 1
    assert timers.next_timeout(now) > 2.0  # type: ignore[operator]
    assert timers.pop_due(now + 5) == ["kept"]
    assert len(timers) == 0


def test_pop_due_defaults_to_now():
    timers: TimerHeap[str] = TimerHeap()
    timers.add(0.0, "now")
    timers.add(60.0, "later")
    assert timers.pop_due() == ["now"]
    assert len(timers) == 1

"""The paramiko backend's hub thread and its set-up threads on their own (no sshd): wake-ups
are never lost; stalled set-up tasks do not hold up the ones queued behind them."""

from __future__ import annotations

import threading

import pytest
from lofarexec_paramiko import hub as hub_module
from lofarexec_paramiko.hub import SETUP_THREADS, Hub


class Idle:
    """A served connection with nothing to do and no next moment (the hub then sleeps until
    woken)."""

    due: float | None = None

    def __init__(self) -> None:
        self.turns = threading.Semaphore(0)

    def turn(self) -> float | None:
        self.turns.release()
        return None


def test_a_close_that_wakes_the_hub_just_before_it_drains_its_wake_ups_still_stops_it() -> None:
    """close() sets the stop flag and wakes the hub; landing between the hub's check of the flag
    and its drain of the wake-ups, it left the hub asleep until its next timer (the
    alive_interval: runs ended ~5 s late now and then)."""
    hub, served = Hub(), Idle()
    hub.poke(served)
    assert served.turns.acquire(timeout=30)  # the hub runs and has gone to sleep (or will)
    waker = hub._waker  # noqa: SLF001 - the moment under test is inside the hub's loop
    drain, wake = waker.drain, waker.wake
    closer = threading.Thread(target=hub.close, daemon=True)
    closer_woke = threading.Event()
    armed, landed = threading.Event(), threading.Event()

    def wake_and_say() -> None:
        wake()
        if threading.current_thread() is closer:
            closer_woke.set()

    def close_lands_now() -> None:  # the hub is about to drain: close() comes and wakes it
        if armed.is_set():
            armed.clear()
            closer.start()
            assert closer_woke.wait(timeout=30)
            drain()
            landed.set()
            return
        drain()

    waker.wake = wake_and_say  # type: ignore[method-assign]
    waker.drain = close_lands_now  # type: ignore[method-assign]
    armed.set()
    hub.poke(served)  # the hub's next turn of its loop meets the close
    assert landed.wait(timeout=30)
    closer.join(timeout=30)  # a hang detector, not a speed bound: before the fix, forever
    assert not closer.is_alive(), "the hub slept through its close"


def blocked_tasks(hub: Hub, count: int, release: threading.Event) -> threading.Semaphore:
    """``count`` set-up tasks that block until ``release`` (hosts stalled in authentication);
    the semaphore counts those that have begun."""
    begun = threading.Semaphore(0)

    def stall() -> None:
        begun.release()
        release.wait()

    for _ in range(count):
        hub.submit(stall)
    return begun


@pytest.mark.parametrize("stalled", [SETUP_THREADS, 3 * SETUP_THREADS])
def test_tasks_stalled_on_every_set_up_thread_do_not_hold_up_the_next(monkeypatch,
                                                                      stalled) -> None:
    """A host that stalls mid-authentication held a set-up thread for its whole timeout:
    SETUP_THREADS of them held up every other host that long. Past STALL_SECONDS a task no
    longer counts, and the queue moves on (the hub notices the moment; nothing else is
    submitted to wake it)."""
    monkeypatch.setattr(hub_module, "STALL_SECONDS", 0.05)
    hub, release, done = Hub(), threading.Event(), threading.Event()
    try:
        begun = blocked_tasks(hub, stalled, release)
        hub.submit(done.set)
        for _ in range(stalled):  # every stalled task got a thread too, in time
            assert begun.acquire(timeout=30)
        assert done.wait(timeout=30), "a set-up task waited behind stalled ones"
        assert not release.is_set()  # ... while they were all still stalled
    finally:
        release.set()
        hub.close()


def test_set_up_threads_stay_at_the_limit_while_no_task_stalls(monkeypatch) -> None:
    """No task is stalled (STALL_SECONDS is long): SETUP_THREADS at work, the rest wait."""
    monkeypatch.setattr(hub_module, "STALL_SECONDS", 3600.0)
    hub, release = Hub(), threading.Event()
    try:
        begun = blocked_tasks(hub, SETUP_THREADS + 5, release)
        for _ in range(SETUP_THREADS):
            assert begun.acquire(timeout=30)
        assert len(hub.setup._threads) == SETUP_THREADS  # noqa: SLF001
        assert hub.setup.check_at is not None  # the hub will look again when they stall
        release.set()
        for _ in range(5):  # the queued five run once threads are free
            assert begun.acquire(timeout=30)
    finally:
        release.set()
        hub.close()


def test_at_most_max_setup_threads_even_when_all_stall(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "STALL_SECONDS", 0.01)
    monkeypatch.setattr(hub_module, "MAX_SETUP_THREADS", SETUP_THREADS + 4)
    hub, release = Hub(), threading.Event()
    try:
        begun = blocked_tasks(hub, SETUP_THREADS + 10, release)
        for _ in range(SETUP_THREADS + 4):
            assert begun.acquire(timeout=30)
        hub.setup.recheck()  # as the hub would: every task has stalled, six are queued
        assert len(hub.setup._threads) == SETUP_THREADS + 4  # noqa: SLF001 - no more
        assert not begun.acquire(blocking=False)  # the other six wait for a thread
        release.set()
        for _ in range(6):
            assert begun.acquire(timeout=30)
    finally:
        release.set()
        hub.close()

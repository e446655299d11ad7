"""The paramiko backend's hub thread on its own (no sshd): wake-ups are never lost."""

from __future__ import annotations

import threading

from lofarexec_paramiko.hub import Hub


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

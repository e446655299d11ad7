"""Run by the lifeline's watcher once the control node has died: kill that run's local jobs.

Usage: ``python -I -S reaper.py NAME=VALUE KILL_GRACE CONTROL_PID``. Stdlib only, run in a
fresh interpreter with nothing of lofarexec imported. Every process whose environment holds the
entry ``NAME=VALUE`` (the run's marker, which each job and what it starts inherit) is a job's,
and so is its process group (each job leads one): TERM them all, wait up to ``KILL_GRACE``
seconds for them to end, then KILL whatever still carries the marker, until nothing does.
"""

from __future__ import annotations

import os
import select
import signal
import sys

_KILL_ROUNDS = 50  # a job forking as fast as it is killed still ends: each round KILLs groups


def marked(marker: bytes) -> dict[int, int]:
    """The live processes whose environment holds ``marker``: pid -> process group."""
    found = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if marker not in environ.read().split(b"\0"):
                    continue  # (a zombie's is empty)
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone, or not ours to read
        found[int(name)] = int(fields[2])
    return found


def hit(found: dict[int, int], signum: int) -> None:
    """Signal each process and its group (never ours, never pid 0 or 1's)."""
    mine = os.getpgrp()
    for pid, group in found.items():
        targets = [pid] + ([-group] if group > 1 and group != mine else [])
        for target in targets:
            try:
                os.kill(target, signum)
            except OSError:
                pass


def wait_for(pids: list[int], timeout: float) -> None:
    """Until every one of ``pids`` has exited or ``timeout`` seconds have passed."""
    poller = select.poll()
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            continue
        poller.register(fds[-1], select.POLLIN)
    deadline = _now() + timeout
    remaining = set(fds)
    while remaining and _now() < deadline:
        for fd, _ in poller.poll(max(0.0, deadline - _now()) * 1000):
            poller.unregister(fd)
            remaining.discard(fd)
    for fd in fds:
        os.close(fd)


def _now() -> float:
    return os.times().elapsed


def main(marker: str, grace: str, control: str) -> int:
    entry = os.fsencode(marker)
    found = marked(entry)
    hit(found, signal.SIGTERM)
    wait_for(list(found), float(grace))
    killed = set(found)
    for _ in range(_KILL_ROUNDS):
        found = marked(entry)
        if not found:
            break
        killed.update(found)
        hit(found, signal.SIGKILL)
        wait_for(list(found), 0.1)
    if killed:
        try:
            print(f"lofarexec: the control node (pid {control}) died without cleaning up: "
                  f"killed its {len(killed)} local job process(es)", file=sys.stderr, flush=True)
        except OSError:
            pass  # nobody reads its stderr any more
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

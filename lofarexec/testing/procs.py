"""Processes of the test beds, named by (pid, start time) so a reused pid is never mistaken.

The sshd and Slurm test beds start daemons that outlive the call that started them (they
daemonize, or are recorded in a state file for ``scripts/*bed down``); these helpers read
``/proc`` to tell whether one of them still runs and to signal it safely.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

ProcId = tuple[int, int]
"""(pid, start time in clock ticks since boot); start time 0: not recorded."""


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def running(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie (``kill -0`` says yes to zombies)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def wait_gone(pids: int | Iterable[int], timeout: float) -> bool:
    """Wait until every one of ``pids`` has exited (a zombie counts), on pidfds, not a sleep
    loop: a SIGKILL takes effect when the process is next scheduled, which on a loaded machine
    is not at once. True when all are gone within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for pid in [pids] if isinstance(pids, int) else list(pids):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)
        if running(pid):
            return False
    return True


def alive(process: ProcId) -> bool:
    """True while the process exists, is not a zombie (``kill -0`` says yes to zombies) and is
    the one recorded."""
    fields = stat_fields(process[0])
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return process[1] == 0 or int(fields[19]) == process[1]


def send_signal(process: ProcId, signum: int) -> None:
    """Signal the recorded process, and nothing if it is gone (its pid may be another's now)."""
    if alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process[0], signum)


class DaemonBed:
    """What the test beds share: a context manager around ``start()``/``stop()``, and the state
    file (``STATE_FILE`` in ``directory``) through which another process finds and stops a bed
    (``scripts/*bed down``). Subclasses set ``STATE_FILE`` and ``Error``."""

    STATE_FILE: str
    Error: type[Exception]
    directory: Path

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @classmethod
    def read_state(cls, directory: Path | str) -> dict[str, Any]:
        """The state a bed saved in ``directory``; :attr:`Error` when there is none to read."""
        path = Path(directory).resolve() / cls.STATE_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise cls.Error(f"{path}: no readable bed state ({error})") from error

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file at once (a reader never sees half of it)."""
        path = self.directory / self.STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(path)


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces (sshd rewrites it as one string: its title)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def pids_with_cmdline(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and text in cmdline(int(entry.name))
    ]


def descendants(root: int) -> list[ProcId]:
    """Every process below ``root`` in the process tree, as found in /proc now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        started = start_time(pid)
        if started is not None:
            found.append((pid, started))
            todo += children.get(pid, [])
    return found


def kill_tree(root: ProcId, timeout: float) -> list[int]:
    """SIGKILL a daemon and all its descendants, frozen first so none escapes by forking; wait
    until each is gone or a zombie. Returns the pids still alive after ``timeout`` seconds."""
    if not alive(root):
        return []
    send_signal(root, signal.SIGSTOP)
    tree: set[ProcId] = {root}
    for _ in range(5):  # a child may fork between our scan and its SIGSTOP: scan until stable
        new = set(descendants(root[0])) - tree
        for process in new:
            send_signal(process, signal.SIGSTOP)
        tree |= new
        if not new:
            break
    for process in tree:
        send_signal(process, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(alive(process) for process in tree):
        if time.monotonic() > deadline:
            return sorted(process[0] for process in tree if alive(process))
        time.sleep(0.01)  # no pidfd for a daemon another process started: poll /proc
    return []

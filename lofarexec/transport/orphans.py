"""After a host agent's link ended: its jobs' statuses fetched, and the one orphan kill.

A job may end on its host while the link is stalled (a frozen session, a pulled cable): the
agent then knows its status but cannot send it. The agent also keeps each status in a file
named by a marker of its own (see :mod:`lofarexec.hostprograms.host_agent`); when the control
node gives up on the link, :func:`fetch_statuses` reads that file over a fresh session, so that
such a job ends with its own status instead of a transport error.

The orphan kill: jobs left running on a host by a host agent that was killed there.

Each job's pid on the host is its process group. When an agent dies (the OOM killer, a
``kill -9``) while its link to the host still works, the transport runs
:func:`orphan_kill_command` on the host its own way (``ssh HOST ...``, a template, a paramiko
channel) through :func:`kill_orphans`, which logs what came of it, so that a job reported as
lost is gone.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable

_log = logging.getLogger("lofarexec.transport.orphans")


def status_marker() -> str:
    """A fresh marker naming an agent's statuses' file (hexadecimal: safe in a file name and
    unquoted in a shell)."""
    return secrets.token_hex(8)


def status_fetch_command(marker: str) -> str:
    """A remote shell command that prints the statuses' file of the agent started with
    ``marker`` (only if it is ours: it is in a shared folder), then removes it; status 0."""
    if not re.fullmatch(r"[0-9a-f]+", marker):
        raise ValueError(f"not a status marker: {marker!r}")
    path = f'"${{TMPDIR:-/tmp}}/lofarexec-agent-{marker}"'
    return f"f={path}; [ -O \"$f\" ] && cat -- \"$f\"; rm -f -- \"$f\"; exit 0"


def stalled_note(host: str) -> str:
    """What a job whose status was fetched after its link stalled is told."""
    return f"status fetched after the link to {host} stalled"


def fetch_statuses(host: str, marker: str, numbers: list[int],
                   run: Callable[[str, float], str], *, timeout: float) -> dict[int, int]:
    """The statuses the agent started with ``marker`` on ``host`` recorded for the jobs
    ``numbers`` (its job numbers), by number; jobs it has none for are left out (still running,
    or killed for the lost link).

    ``run(command, seconds)`` runs the remote shell ``command`` on the host over a fresh
    session, waits at most ``seconds`` and returns its standard output, or raises
    :class:`OSError` saying why not (logged: the jobs then stay lost).
    """
    try:
        text = run(status_fetch_command(marker), timeout)
    except OSError as exc:
        _log.warning("%s: the link to the host's agent ended and its jobs' statuses could not be "
                     "fetched (%s): %d job(s) end as transport errors", host, exc, len(numbers))
        return {}
    wanted, found = set(numbers), {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and all(re.fullmatch(r"-?[0-9]+", word) for word in words):
            number, status = int(words[0]), int(words[1])
            if number in wanted:
                found[number] = status
    if found:
        _log.warning("%s: the link to the host's agent stalled; fetched the statuses of %d of "
                     "its %d running job(s) over a fresh session", host, len(found),
                     len(numbers))
    return found


def orphan_kill_command(pids: list[int], kill_grace: float) -> str:
    """A remote shell command that kills the process groups of jobs whose agent was killed
    (each job's pid is its group): TERM, then KILL after ``kill_grace``; always status 0."""
    groups = " ".join(f"-{int(pid)}" for pid in pids)
    # "-s NAME --" (POSIX): dash, Debian's /bin/sh, refuses "kill -TERM -- -PID"
    return (f"kill -s TERM -- {groups} 2>/dev/null; sleep {kill_grace:g}; "
            f"kill -s KILL -- {groups} 2>/dev/null; exit 0")


def kill_orphans(host: str, pids: list[int], kill_grace: float,
                 run: Callable[[str, float], str | None], *, timeout: float) -> bool:
    """Kill the process groups ``pids`` on ``host``; whether that worked (also logged).

    ``run(command, seconds)`` runs the remote shell ``command`` on the host and waits at most
    ``seconds`` (``kill_grace`` + ``timeout``) for it; it returns None when the command ended
    well, else why not (it may raise :class:`OSError`, taken as the reason).
    """
    groups = " ".join(f"-{pid}" for pid in pids)
    try:
        why = run(orphan_kill_command(pids, kill_grace), kill_grace + timeout)
    except OSError as exc:
        why = str(exc)
    if why is None:
        _log.warning("%s: the host's agent ended; killed the process groups of its %d running "
                     "job(s): %s", host, len(pids), groups)
        return True
    _log.error("%s: the host's agent ended and its jobs' process groups (%s) could not be "
               "killed (%s): they may still run there", host, groups, why)
    return False

"""The one orphan kill: jobs left running on a host by a host agent that was killed there.

Each job's pid on the host is its process group. When an agent dies (the OOM killer, a
``kill -9``) while its link to the host still works, the transport runs
:func:`orphan_kill_command` on the host its own way (``ssh HOST ...``, a template, a paramiko
channel) through :func:`kill_orphans`, which logs what came of it, so that a job reported as
lost is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_log = logging.getLogger("lofarexec.transport.orphans")


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

"""The end-of-run audit: processes a run left on its hosts are named and killed.

Every job has an end, but a node may leave something behind: a daemon it double-forked into a
session of its own escapes its job's process-group kill and keeps running after the job
ended. Every node of a run gets a random run marker in its environment
(:data:`~lofarexec.channel.protocol.ENV_RUN`), which its descendants inherit. After the last
job of a ``_schedule_jobs`` call ended and before the backend closes its links,
:func:`audit_hosts` starts, on each host the run used and through the run's own backend (for
the host agents of ``ssh``, ``paramiko`` and ``local`` that is a spawn over the link already
open: no new connection), one small shell command that lists the live processes whose
environment holds that marker. Hosts are checked in parallel. What it finds is named in a
warning (host, pid, command) and its process groups are killed with
:func:`lofarexec.transport.orphans.orphan_kill_command`, the one orphan kill.

Only backends that declare ``audit = True`` are audited (``local``, ``ssh``, ``paramiko``,
``cmdline``, ``mpirun``); for any other (``srun``: Slurm ends every process of a job or step
itself, and an audit through it would be a Slurm job per host at the end of every run) one
info line says that the audit was skipped. ``[remote] audit = off`` turns it off.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from lofarexec.backend import Backend, JobHandle, LaunchRequest, Outcome
from lofarexec.channel.protocol import ENV_HOST, ENV_RUN
from lofarexec.config import PipelineConfig
from lofarexec.job import ComputeJob
from lofarexec.run.audit_here import leftovers_here, run_here
from lofarexec.transport.orphans import orphan_kill_command

__all__ = ["AUDIT_TIMEOUT", "EndOfRunAudit", "Leftover", "audit_hosts",
           "audited_hosts", "leftover_command", "parse_leftovers", "run_marker"]

#: ``kill_grace`` of the audit's kill when the backend's settings have none.
DEFAULT_KILL_GRACE = 2.0
#: Seconds an audit command (or its kill) may take on a host before it is given up.
AUDIT_TIMEOUT = 30.0
#: States of jobs whose host answered: only such hosts are audited (a host that was never
#: reached, or whose link was lost, would only cost a connect timeout again).
_REACHED = frozenset({"succeeded", "failed", "timed_out", "killed"})
_PREFIX = "lofarexec-leftover"
_LINE = re.compile(rf"^{_PREFIX} ([0-9]+) ([0-9]+) (\S+) ?(.*)$")
_log = logging.getLogger("lofarexec.run.audit")


@dataclass(frozen=True)
class Leftover:
    """A process of the run found alive on a host after its jobs ended."""

    host: str
    pid: int
    group: int
    command: str


def run_marker() -> str:
    """A fresh run marker (hexadecimal: safe unquoted in a shell and in ``grep -F``)."""
    return secrets.token_hex(8)


def leftover_command(marker: str) -> str:
    """A POSIX shell command printing ``lofarexec-leftover PID PGID HOST COMMAND`` for each
    live (not zombie) process on the host whose environment holds ``ENV_RUN=marker`` (HOST:
    its job's ``LOFAREXEC_HOST``, ``-`` if none); status 0. One ``grep`` over
    ``/proc/*/environ``: cheap when nothing is there."""
    if not re.fullmatch(r"[0-9a-f]+", marker):
        raise ValueError(f"not a run marker: {marker!r}")
    return (
        f"for f in $(grep -l -a -F -e {ENV_RUN}={marker} /proc/[0-9]*/environ 2>/dev/null); do "
        "p=${f#/proc/}; p=${p%/environ}; "
        "s=$(cat /proc/$p/stat 2>/dev/null) || continue; "
        "set -- ${s##*) }; "  # after "pid (comm) ": state ppid pgrp ...
        "case $1 in Z|X|x) continue;; esac; "
        f"h=$(tr '\\000' '\\n' <$f 2>/dev/null | sed -n 's/^{ENV_HOST}=//p' | head -n 1); "
        # one line per process: a newline in an argument must not forge another's line
        "c=$(tr '\\000\\n\\r' '   ' </proc/$p/cmdline 2>/dev/null | cut -c1-200); "
        f"echo \"{_PREFIX} $p $3 ${{h:--}} $c\"; "
        "done; exit 0"
    )


def parse_leftovers(host: str, text: str) -> list[Leftover]:
    """The processes :func:`leftover_command` listed in ``text``, run on ``host``, each named
    by its job's host (``host`` when it has none); other lines are ignored."""
    found = []
    for line in text.split("\n"):  # not splitlines(): a "\r" in a command ends no line
        match = _LINE.match(line.strip())
        if match:
            owner = host if match[3] == "-" else match[3]
            found.append(Leftover(owner, int(match[1]), int(match[2]), match[4].strip()))
    return found


def audited_hosts(jobs: Iterable[ComputeJob], local_only: bool) -> list[str]:
    """The hosts to audit: those where a job of the run ended after its host answered, in
    first-use order; one only when every node ran on this machine (``local_only``)."""
    hosts: dict[str, None] = {}
    for job in jobs:
        host = job.results.get("host") if job.results else None
        if host and job.results.get("state") in _REACHED:
            hosts.setdefault(host, None)
    return list(hosts)[:1] if local_only else list(hosts)


class _Waiter:
    """The outcomes of commands started on several hosts at once."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self.outcomes: dict[str, Outcome] = {}

    def report(self, host: str) -> Callable[[Outcome], None]:
        def report(outcome: Outcome) -> None:
            with self._done:
                self.outcomes[host] = outcome
                self._done.notify_all()
        return report

    def wait(self, hosts: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._done:
            while not set(hosts) <= set(self.outcomes):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._done.wait(left)



def _run_everywhere(backend: Backend, commands: dict[str, str], recipe_name: str,
                    timeout: float) -> dict[str, Outcome | str]:
    """Start ``commands`` (host -> shell command) through ``backend`` on all hosts at once;
    by host, the outcome, or why there is none (the command was killed after ``timeout``)."""
    waiter, handles = _Waiter(), {}
    for number, (host, command) in enumerate(commands.items()):
        request = LaunchRequest(job_id=1_000_000_000 + number, host=host,
                                argv=("/bin/sh", "-c", command),
                                environment={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                                token=secrets.token_hex(16), recipe_name=recipe_name)
        try:
            handles[host] = backend.start(request, waiter.report(host))
        except Exception as exc:  # noqa: BLE001 - a backend's bug must not end the run here
            waiter.report(host)(Outcome(None, transport_error=f"cannot start: {exc}"))
    waiter.wait(list(commands), timeout)
    results: dict[str, Outcome | str] = {}
    for host in commands:
        outcome = waiter.outcomes.get(host)
        if outcome is None:
            _kill(handles.get(host))
            results[host] = f"no answer in {timeout:g} s"
        elif outcome.transport_error is not None:
            results[host] = outcome.transport_error
        elif outcome.returncode != 0:
            results[host] = f"status {outcome.returncode}: {outcome.errors.strip()[-200:]}"
        else:
            results[host] = outcome
    return results


def _kill(handle: JobHandle | None) -> None:
    if handle is not None:
        try:
            handle.kill()
        except Exception:  # noqa: BLE001 - best effort on a command already given up
            pass


def audit_hosts(backend: Backend, hosts: Sequence[str], marker: str, *, kill_grace: float,
                recipe_name: str = "pipeline", logger: logging.Logger | None = None,
                timeout: float = AUDIT_TIMEOUT, local_only: bool = False) -> list[Leftover]:
    """Find on ``hosts`` (through ``backend``, all at once) the live processes of the run
    marked ``marker``; warn naming each by host and pid, kill their process groups (TERM,
    KILL after ``kill_grace``); the leftovers found. Never raises for a host's failure: a
    host that cannot be audited is a warning. With ``local_only`` (every node ran here,
    ``hosts`` is one name) every leftover is named by its job's host and killed here."""
    log = logger or _log
    if not hosts:
        return []
    started = time.monotonic()
    if local_only:  # every node ran on this machine: look (and kill) here, no job (issue 17)
        listed: dict[str, Outcome | str] = {
            host: Outcome(0, output=leftovers_here(marker)) for host in hosts}
    else:
        listed = _run_everywhere(backend, {host: leftover_command(marker) for host in hosts},
                                 recipe_name, timeout)
    found: dict[str, list[Leftover]] = {}
    for host, result in listed.items():
        if isinstance(result, str):
            log.warning("end-of-run audit: %s could not be checked for processes the run left "
                        "(%s)", host, result)
            continue
        for left in parse_leftovers(host, result.output):
            # several host names on one machine (or a shared process table) list each
            # other's leftovers: each is named, and killed, by its own host's audit
            if local_only or left.host == host:
                found.setdefault(left.host, []).append(left)
    log.debug("end-of-run audit of %d host(s) took %.3f s", len(hosts),
              time.monotonic() - started)
    if not found:
        return []
    groups: dict[str, set[int]] = {}
    for owner, leftovers in found.items():
        names = ", ".join(f"pid {left.pid} ({left.command or '?'})" for left in leftovers)
        log.warning("end-of-run audit: %s: %d process(es) of the run still alive after its "
                    "jobs ended, killing them: %s", owner, len(leftovers), names)
        # never group 1 or below (kill -1 is everyone) nor this process's own group
        groups.setdefault(hosts[0] if local_only else owner, set()).update(
            left.group for left in leftovers if left.group > 1 and left.group != os.getpgrp())
    kills = {host: orphan_kill_command(sorted(ids), kill_grace)
             for host, ids in groups.items() if ids}
    killed = (run_here(kills, timeout + kill_grace) if local_only else
              _run_everywhere(backend, kills, recipe_name, timeout + kill_grace))
    for host, result in killed.items():
        if isinstance(result, str):
            log.error("end-of-run audit: %s: the run's leftover processes (groups %s) could "
                      "not be killed (%s): they may still run there", host,
                      ", ".join(map(str, sorted(groups[host]))), result)
    return [left for leftovers in found.values() for left in leftovers]


class EndOfRunAudit:
    """The audit of one ``_schedule_jobs`` call: made before any job starts (so that a bad
    ``[remote] audit`` value stops the run at once), its :attr:`marker` put in every node's
    environment, :meth:`run` called after the last job ended, before the backend closes."""

    def __init__(self, config: PipelineConfig, recipe_name: str,
                 logger: logging.Logger) -> None:
        self.enabled: bool = config.get_bool("remote", "audit", fallback=True)
        self.marker = run_marker()
        self._recipe_name = recipe_name
        self._logger = logger

    def run(self, backend: Backend, jobs: Sequence[ComputeJob]) -> list[Leftover]:
        """Audit the hosts ``jobs`` used, for a backend that declares ``audit = True``; for
        another, say in one info line that it was skipped."""
        if not self.enabled:
            return []
        if not getattr(type(backend), "audit", False):
            self._logger.info(
                "end-of-run audit skipped: the %s backend does not take part (it does not "
                "declare audit = True; see [remote] audit in the configuration reference)",
                backend.name)
            return []
        local_only = getattr(type(backend), "local_only", False)
        hosts = audited_hosts(jobs, local_only)
        grace = getattr(backend.settings, "kill_grace", DEFAULT_KILL_GRACE)
        return audit_hosts(backend, hosts, self.marker, kill_grace=grace,
                           recipe_name=self._recipe_name, logger=self._logger,
                           local_only=local_only)

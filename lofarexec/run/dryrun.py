"""A dry run (``-n``): the plan of one ``_schedule_jobs`` call, shown; nothing started.

What the user sees is what the run would do: one line per host (its jobs, its slots under
``max_per_node`` and the first and last job id), a line for the jobs without a host (placed
when they start, on the least-loaded host of the pool), and for the first job or two the exact
argv the configured backend would run, asked of the backend itself
(:meth:`~lofarexec.backend.Backend.describe_launch`, built by the code its ``start`` uses).
No process is started, no connection made, no socket opened and no file written; a backend
that cannot say prints so. The job's token never shows: a word holding it is redacted, and the
launch wrapper's and host agent's inline programs (kilobytes of base64) are shortened.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shlex
import sys
from collections.abc import Callable, Collection, Sequence
from typing import TextIO

from lofarexec.backend import Backend, LaunchPreview, LaunchRequest
from lofarexec.channel.protocol import ENV_NODE_ARGUMENTS
from lofarexec.errors import JobListError, LofarexecError
from lofarexec.job import ComputeJob, JobResult
from lofarexec.run.limits import Limits

#: How many jobs' argv a dry run shows (the first, and the first with another command).
PREVIEWED_JOBS = 2
#: How the token shows wherever a backend put it.
REDACTED = "<token>"
#: Inline programs are long base64 runs: shown as their length only.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")
#: A last argv word longer than this, with a space, is a remote command line: shown apart.
_LONG_WORD = 60
#: How many pool hosts are named in the line of jobs without a host.
_POOL_NAMES_SHOWN = 5

RequestFor = Callable[[ComputeJob, str, str], LaunchRequest]
"""Builds the launch request of a job on a host with a token, as the real run would."""


@dataclasses.dataclass
class HostPlan:
    """The jobs queued for one host (``host`` None: the jobs placed from the pool)."""

    host: str | None
    job_ids: list[int]


def host_plans(jobs: Sequence[ComputeJob],
               skipped: Collection[int] = frozenset()) -> list[HostPlan]:
    """The jobs grouped by host, hosts in the order of their first job; host-less jobs last.
    The ``skipped`` indices (succeeded before, ``--resume``) are in no plan."""
    plans: dict[str | None, HostPlan] = {}
    for index, job in enumerate(jobs):
        if index not in skipped:
            plans.setdefault(job.host, HostPlan(job.host, [])).job_ids.append(index)
    open_plan = plans.pop(None, None)
    return [*plans.values(), *([open_plan] if open_plan else [])]


def show_dry_run(jobs: Sequence[ComputeJob], backend: Backend, limits: Limits,
                 pool: Sequence[str] | None, request_for: RequestFor,
                 out: TextIO | None = None, skipped: Collection[int] = frozenset()) -> None:
    """Print the plan of ``jobs`` and the previews of the first one or two to ``out`` (stdout),
    and give every job its ``not_started`` result. Raises :class:`JobListError`, as the run
    would, when a job has no host and there is no pool to place it on.

    With ``--resume``, ``skipped`` holds the indices of the jobs that succeeded before: the real
    run would not start them, so the plan leaves them out, says how many they are, and they keep
    the results restored from the journal."""
    out = out or sys.stdout
    plans = host_plans(jobs, skipped)
    pool = list(dict.fromkeys(pool or ()))
    if plans and plans[-1].host is None and not pool:
        raise JobListError(
            f"job {plans[-1].job_ids[0]} has no host and the run has no host list: give each "
            "job a host, set [cluster] hosts, or run inside an allocation "
            "($SLURM_JOB_NODELIST, $PBS_NODEFILE)")
    hosts = {plan.host for plan in plans if plan.host}
    if any(plan.host is None for plan in plans):
        hosts |= set(pool)
    resumed = (f"; {len(skipped)} of {_count(len(jobs), 'job')} succeeded before and would "
               "be skipped (--resume)") if skipped else ""
    lines = [f"dry run: {_count(len(jobs) - len(skipped), 'job')} on "
             f"{_count(len(hosts), 'host')} with backend {backend.name}; nothing is "
             f"started{resumed}"]
    lines += plan_table(plans, limits, pool)
    for job_id in previewed(jobs, skipped):
        job = jobs[job_id]
        lines += preview_lines(backend, job_id, job.host or pool[0], job, request_for)
    out.write("\n".join(lines) + "\n")
    out.flush()
    for index, job in enumerate(jobs):
        if index not in skipped:
            job.results = JobResult.not_run(job.host, "dry run")


def plan_table(plans: Sequence[HostPlan], limits: Limits, pool: Sequence[str]) -> list[str]:
    """One line per host: jobs, slots, first and last job id; then the pool's line."""
    rows = [("host", "jobs", "slots", "first", "last")]
    for plan in plans:
        if plan.host is None:
            continue
        rows.append((plan.host, str(len(plan.job_ids)), _slots(limits.for_host(plan.host)),
                     str(plan.job_ids[0]), str(plan.job_ids[-1])))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = ["  " + "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                              for column, (cell, width) in enumerate(zip(row, widths)))
             for row in rows] if len(rows) > 1 else []
    for plan in plans:
        if plan.host is None:
            named = ", ".join(pool[:_POOL_NAMES_SHOWN]) + (", ..." if len(pool) >
                                                           _POOL_NAMES_SHOWN else "")
            slots = {_slots(limits.for_host(host)) for host in pool}
            lines.append(
                f"  {len(plan.job_ids)} jobs without a host (first {plan.job_ids[0]}, last "
                f"{plan.job_ids[-1]}): each placed when it starts on the least-loaded of "
                f"{len(pool)} pool hosts ({named}), slots per host: {', '.join(sorted(slots))}")
    if limits.total is not None:
        lines.append(f"  at most {limits.total} jobs at once in all ([remote] max_jobs)")
    return lines


def previewed(jobs: Sequence[ComputeJob], skipped: Collection[int] = frozenset()) -> list[int]:
    """The ids of the jobs whose argv is shown: the first not ``skipped``, and the first with
    another command (else the second)."""
    ids = [index for index in range(len(jobs)) if index not in skipped]
    if not ids:
        return []
    first = jobs[ids[0]].command
    other = next((index for index in ids if jobs[index].command != first),
                 ids[1] if len(ids) > 1 else None)
    return [ids[0], *([other] if other is not None else [])][:PREVIEWED_JOBS]


def preview_lines(backend: Backend, job_id: int, host: str, job: ComputeJob,
                  request_for: RequestFor) -> list[str]:
    """What ``backend`` would run for job ``job_id`` on ``host``, in a few indented lines."""
    token = secrets.token_hex(16)
    request = request_for(job, host, token)
    placed = "" if job.host else " (placed from the pool; shown on its first host)"
    lines = [f"job {job_id} on {host}{placed}:",
             f"  node argv: {shown(shlex.join(request.argv), token)}"]
    try:
        preview = backend.describe_launch(request)
    except LofarexecError as exc:
        return [*lines, f"  backend {backend.name} cannot launch it: {exc}"]
    except Exception as exc:  # a plugin's bug must not cost the plan: one line, as for None
        return [*lines, f"  argv not known for backend {backend.name} ({type(exc).__name__}: "
                        f"{exc})"]
    if preview is None:
        return [*lines, f"  argv not known for backend {backend.name}"]
    if request.environment.get(ENV_NODE_ARGUMENTS) == "stored":  # not on the argv: say them
        lines.insert(2, f"  arguments (fetched by the node over its channel): "
                        f"{shown(_clipped(repr(job.arguments)), token)}")
    if tuple(preview.argv) == tuple(request.argv):
        del lines[1]  # the node runs as it is: its argv once is enough
    return lines + _preview_words(preview, token)


def _preview_words(preview: LaunchPreview, token: str) -> list[str]:
    once = ", once per host: the host agent" if preview.per_host else ""
    argv, command = list(preview.argv), preview.command
    if argv and " " in argv[-1] and len(argv[-1]) > _LONG_WORD:
        # a command line for a remote shell (ssh HOST CMD, sh -c CMD): shown unquoted below
        command, argv[-1] = argv[-1], "<command>"
    lines = [f"  {preview.where}{once}: "
             + shown(shlex.join(argv) if argv else command or "", token)]
    if argv and command is not None:
        lines.append(f"    <command> = {shown(command, token)}")
    return [*lines, *([f"  ({preview.note})"] if preview.note else [])]


def shown(text: str, token: str) -> str:
    """``text`` with the token redacted and inline programs shortened to their length."""
    text = text.replace(token, REDACTED)
    return _BASE64_RUN.sub(lambda found: f"<{len(found.group())} base64 characters>", text)


def _clipped(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _slots(limit: int | None) -> str:
    return "unlimited" if limit is None else str(limit)

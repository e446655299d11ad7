"""The end of a run: a short summary in the recipe's log, and the report in the job directory.

A plugin of the run hooks, registered by the runner beside the journal (like pytest's terminal
summary). At ``lofarexec_run_finished`` (after the journal has written its last lines:
``trylast``) it writes ``<job_directory>/report.html`` (the runs of this process, from the
records the journal gets, and the output tails of the failed jobs), then logs:

* a run where every job succeeded: one line (counts, wall time, slowest host) and one with the
  paths of the journal and the report;
* otherwise also, for each failed job (up to :data:`FAILURES_SHOWN`, then a count), its id,
  host, state, exit status, reason and the last lines of its stderr (or output).

A report that cannot be written is one warning; the run's outcome does not change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lofarexec.context import RunContext
from lofarexec.job import SUCCEEDED, SUMMARY_KEYS, ComputeJob
from lofarexec.plugin.spec import hookimpl
from lofarexec.run.journal import ENDED, JOURNAL_NAME, STARTED
from lofarexec.run.report import (
    REPORT_NAME,
    Attempt,
    AttemptKey,
    RunReport,
    assign_lanes,
    attempts_from_lines,
    counts_text,
    duration_text,
    ended_attempt,
    failure_line,
    tail_of,
    write_report,
)

#: Failed jobs the summary shows one by one; the rest are counted.
FAILURES_SHOWN = 20
#: Lines of a failed job's stderr (or output) the summary shows.
TAIL_LINES = 5
#: Hosts named as the slowest.
SLOWEST_HOSTS = 3
_log = logging.getLogger(__name__)


class RunReporter:
    """Writes the report and logs the summary when a run ends; does nothing in a dry run.

    The report covers the runs of this process so far (a recipe's ``_schedule_jobs`` calls),
    built from the records the journal gets: a run's end never reads back a journal that grows
    with every run of the job name (``lofarexec report`` reads the whole journal). While a run
    goes, little is kept per job (the order jobs end in, and each running job's start): the
    records are made at the run's end from the jobs' own results, which by then are what the
    hooks saw, so a run of a million jobs does not hold two dicts per job.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or _log
        self._attempts: list[Attempt] = []
        """The attempts of the runs of this process that have ended."""
        self._tails: dict[AttemptKey, str] = {}
        self._ended: list[int] = []
        """This run's jobs, by id, in the order they had their final state."""
        self._running: dict[int, _Start] = {}
        """This run's started jobs without a final state: their attempt's start."""
        self._earlier: dict[int, list[_Start]] = {}
        """The earlier attempts of this run's retried jobs."""

    @hookimpl
    def lofarexec_job_started(self, job: ComputeJob) -> None:
        results = job.results
        earlier = self._running.get(job.id)  # type: ignore[arg-type]
        if earlier is not None:  # the attempt before this one is being retried
            self._earlier.setdefault(job.id, []).append(earlier)  # type: ignore[arg-type]
        self._running[job.id] = (results.get("host"),  # type: ignore[index]
                                 results.get("start_time"), results.get("returncode"))

    @hookimpl
    def lofarexec_job_finished(self, run: RunContext, job: ComputeJob) -> None:
        self._running.pop(job.id, None)  # type: ignore[arg-type]
        self._ended.append(job.id)  # type: ignore[arg-type]
        if job.results.get("state") != SUCCEEDED and job.id is not None:
            self._tails[(run.started, job.id)] = _tail_text(job)

    @hookimpl(trylast=True)
    def lofarexec_run_finished(self, run: RunContext, jobs: list[ComputeJob]) -> None:
        if run.dry_run:
            return
        self._attempts += self._run_attempts(run, jobs)
        self._ended, self._running, self._earlier = [], {}, {}
        report_path = self._write_report(run)
        for line in summary_lines(run, jobs, report_path):
            self.logger.info("%s", line)

    def _run_attempts(self, run: RunContext, jobs: list[ComputeJob]) -> list[Attempt]:
        """This run's attempts, as the report would read them from its journal lines, in the
        order jobs ended, then the jobs the run left running. A job that ran once (nearly
        all) becomes its attempt at once; a retried or running one goes through its lines
        (:meth:`_job_lines`)."""
        by_id: Any = jobs  # a batch's ids are its indices (the runner's numbering)
        if any(job.id != index for index, job in enumerate(jobs)):
            by_id = {job.id: job for job in jobs}
        attempts: list[Attempt] = []
        earlier, started, recipe = self._earlier, run.started, run.recipe_name
        for job_id in self._ended:
            job = by_id[job_id]
            if job_id in earlier:
                attempts += attempts_from_lines(self._job_lines(run, job, False))
            else:
                attempts.append(ended_attempt(started, recipe, job_id, job.command,
                                              job.results))
        attempts += attempts_from_lines(line for job_id in self._running
                                        for line in self._job_lines(run, by_id[job_id], True))
        return attempts

    def _job_lines(self, run: RunContext, job: ComputeJob,
                   running: bool) -> Iterator[dict[str, Any]]:
        last = _line(run, job, STARTED if running else ENDED)
        for host, start, returncode in self._earlier.get(job.id, ()):  # type: ignore[arg-type]
            yield {**last, "event": STARTED, "host": host, "start_time": start,
                   "returncode": returncode}
        if job.id in self._earlier and not running:
            yield {**last, "event": STARTED}  # its start ends the attempt before
        yield last

    def _write_report(self, run: RunContext) -> Path | None:
        path = Path(run.job_directory) / REPORT_NAME
        try:
            report = RunReport(path.parent, assign_lanes(self._attempts), self._tails)
            return write_report(report, path)
        except Exception as exc:  # noqa: BLE001 - a report is never worth a failed run
            self.logger.warning("the run report %s was not written (%s); `lofarexec report "
                                "%s` makes it from the journal", path, exc, path.parent)
            return None


#: A job attempt's start as the report needs it: host, start time, return code then.
_Start = tuple[Any, Any, Any]


def _line(run: RunContext, job: ComputeJob, event: str) -> dict[str, Any]:
    """What the journal writes for this event: who the job is, and its results' summary."""
    return {"run": run.started, "id": job.id, "recipe": run.recipe_name,
            "command": job.command, "event": event,
            **{key: job.results.get(key) for key in SUMMARY_KEYS}}


def _tail_text(job: ComputeJob) -> str:
    return job.results.get("errors") or job.results.get("output") or ""


def summary_lines(run: RunContext, jobs: Sequence[ComputeJob],
                  report_path: Path | None) -> list[str]:
    """The lines logged at the end of a run (short when every job succeeded)."""
    counts: dict[str, int] = {}
    first_start: Any = None
    last_end: Any = None
    per_host: dict[str, list[float]] = {}  # host -> [total duration, jobs]
    failed = []
    for job in jobs:  # one pass: a run may have a million jobs
        get = job.results.get
        state = str(get("state"))
        counts[state] = counts.get(state, 0) + 1
        if state != SUCCEEDED:
            failed.append(job)
        start, end, duration = get("start_time"), get("end_time"), get("job_duration")
        if start and (first_start is None or start < first_start):
            first_start = start
        if end and (last_end is None or end > last_end):
            last_end = end
        if isinstance(duration, int | float):
            host = get("host")
            if host:
                totals = per_host.get(str(host))
                if totals is None:
                    per_host[str(host)] = [float(duration), 1.0]
                else:
                    totals[0] += float(duration)
                    totals[1] += 1.0
    wall = (f" in {duration_text(last_end - first_start)}"
            if first_start is not None and last_end is not None else "")
    lines = [f"run finished: {len(jobs)} jobs{wall}: "
             f"{counts_text(dict(sorted(counts.items(), key=lambda c: -c[1])))}"
             + _slowest_hosts(per_host)]
    for job in failed[:FAILURES_SHOWN]:
        lines.append("  " + failure_line(_attempt(run, job), with_run=False))
        lines += [f"    | {line}" for line in tail_of(_tail_text(job), TAIL_LINES)]
    if len(failed) > FAILURES_SHOWN:
        lines.append(f"  ... and {len(failed) - FAILURES_SHOWN} more failed jobs (in the report)")
    journal = Path(run.job_directory) / JOURNAL_NAME
    lines.append(f"journal {journal}" + (f", report {report_path}" if report_path else
                                         " (no report written)"))
    return lines


def _slowest_hosts(per_host: dict[str, list[float]]) -> str:
    """The hosts of the longest mean job duration, from ``host -> [total, jobs]``."""
    if len(per_host) < 2:
        return ""
    means = sorted(((total / count, host) for host, (total, count) in per_host.items()),
                   reverse=True)
    return "; slowest hosts (mean job): " + ", ".join(
        f"{host} {duration_text(mean)}" for mean, host in means[:SLOWEST_HOSTS])


def _attempt(run: RunContext, job: ComputeJob) -> Attempt:
    results = job.results
    start, end = results.get("start_time"), results.get("end_time")
    return Attempt(run.started, run.recipe_name, job.id if job.id is not None else -1,
                   str(results.get("host") or job.host), str(results.get("state")),
                   start, end, results.get("returncode"), results.get("reason"), job.command)

"""The run report: what a job directory's journal says, as figures, and as text for terminals.

:func:`build_report` reads ``<job_directory>/journal.jsonl`` (every run of that job name, one
entry per job attempt) into a :class:`RunReport`: counts by state, wall time, per-host
statistics, the failed attempts, and the timeline's lanes (one per host slot: an attempt takes
the lowest lane of its host that is free when it starts, so a host has as many lanes as it ran
jobs at once). :func:`render_text` prints it; :mod:`lofarexec.run.report_html` draws it as a
self-contained HTML page; :func:`write_report` writes either.

The journal keeps no output: a failed job's last lines are in the report only when the caller
has them (the report written at the end of a run has them from the jobs in memory); otherwise
the report says where they are (the recipe's log repeats each failed job's stderr tail).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import functools
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lofarexec.errors import LofarexecError
from lofarexec.job import SUCCEEDED, JobState
from lofarexec.run.journal import JOURNAL_NAME, STARTED, read_journal

#: The report written into the job directory at the end of each run.
REPORT_NAME = "report.html"
#: Where a failed job's stderr tail is when the report was not given it.
TAIL_ELSEWHERE = ("not in the journal: the recipe's log <job_directory>/logs/<start time>/"
                  "pipeline.log repeats it, as 'job {id} stderr: ...' lines")
_RUNNING = JobState.RUNNING.value
#: The state the report gives an attempt that was followed by another attempt of its job.
RETRIED = "retried"

#: Control characters but tab, as they are shown in an output tail.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
            if code != 0x09}
#: ``(journal run, job id)``: one job of one ``_schedule_jobs`` call.
AttemptKey = tuple[str, int]


@dataclasses.dataclass(slots=True)
class Attempt:
    """One job attempt as the journal has it; ``end`` is None when the run died while it ran.

    ``lane`` is set by :func:`assign_lanes`.
    """

    run: str
    recipe: str
    job_id: int
    host: str
    state: str
    start: float | None
    end: float | None
    returncode: int | None
    reason: str | None
    command: str
    lane: int = 0

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def failed(self) -> bool:
        """Not succeeded (a retried attempt is not listed: its job's last attempt is)."""
        return self.state not in (SUCCEEDED, RETRIED)


@dataclasses.dataclass(frozen=True)
class HostStats:
    """One host's line of the report: attempts, failures, durations, lanes (slots used)."""

    host: str
    jobs: int
    failures: int
    mean_duration: float | None
    max_duration: float | None
    lanes: int


@dataclasses.dataclass
class RunReport:
    """Everything the report shows, from one job directory's journal."""

    job_directory: Path
    attempts: list[Attempt]
    tails: Mapping[AttemptKey, str] = dataclasses.field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Attempts per state, most common first."""
        return dict(collections.Counter(a.state for a in self.attempts).most_common())

    @property
    def runs(self) -> list[tuple[str, str]]:
        """``(run start, recipe)`` of each run in the journal, oldest first."""
        return list(dict.fromkeys((a.run, a.recipe) for a in self.attempts))

    @functools.cached_property
    def span(self) -> tuple[float, float] | None:
        """The first start and the last end (or start) of any attempt; None if none ran."""
        times = [t for a in self.attempts for t in (a.start, a.end) if t is not None]
        return (min(times), max(times)) if times else None

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if a.failed]

    def tail(self, attempt: Attempt) -> str | None:
        return self.tails.get((attempt.run, attempt.job_id))

    @functools.cached_property
    def run_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Attempts per state of each run (``(run start, recipe)``), oldest run first."""
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for attempt in self.attempts:
            states = counts.setdefault((attempt.run, attempt.recipe), {})
            states[attempt.state] = states.get(attempt.state, 0) + 1
        return counts

    @functools.cached_property
    def hosts(self) -> list[HostStats]:
        """Per-host statistics, slowest mean duration first."""
        by_host: dict[str, list[Attempt]] = collections.defaultdict(list)
        for attempt in self.attempts:
            if attempt.start is not None:
                by_host[attempt.host].append(attempt)
        stats = []
        for host, attempts in by_host.items():
            durations = [d for d in (a.duration for a in attempts) if d is not None]
            stats.append(HostStats(
                host, len(attempts), sum(a.failed for a in attempts),
                sum(durations) / len(durations) if durations else None,
                max(durations, default=None), 1 + max(a.lane for a in attempts)))
        return sorted(stats, key=lambda s: (-(s.mean_duration or 0.0), s.host))


def build_report(job_directory: str | Path,
                 tails: Mapping[AttemptKey, str] | None = None) -> RunReport:
    """The report of a job directory's journal; a missing journal is a one-line error."""
    directory = Path(job_directory)
    if not (directory / JOURNAL_NAME).is_file():
        raise LofarexecError(f"{directory}: no {JOURNAL_NAME} here; give the job directory of "
                             "a run ([layout] job_directory, by default "
                             "<runtime_directory>/jobs/<job name>)")
    try:
        lines = read_journal(directory, every_line=True)
    except OSError as exc:
        raise LofarexecError(f"{directory / JOURNAL_NAME}: cannot read it "
                             f"({exc.strerror or exc})") from None
    return RunReport(directory, assign_lanes(attempts_from_lines(lines)), dict(tails or {}))


def attempts_from_lines(lines: Iterable[Mapping[str, Any]]) -> list[Attempt]:
    """One :class:`Attempt` per attempt, from journal lines as written (started and ended).

    A job retried within its run has a ``started`` line per attempt and one ``ended`` line (its
    last attempt's): each earlier attempt is ``retried``, ended at the latest when the next one
    started (its own end is not in the journal). A ``started`` line with no ``ended`` line is a
    job whose run died while it ran (``running``, end unknown). Lines without ``event`` (older
    journals) are ``ended`` lines.
    """
    attempts: list[Attempt] = []
    started: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for line in lines:
        key = (line.get("run"), line.get("id"))
        if line.get("event") == STARTED:
            started.setdefault(key, []).append(line)
            continue
        attempts += _retried(started.pop(key, []))
        attempts.append(_attempt(line))
    for starts in started.values():
        attempts += _retried(starts)
        attempts.append(_attempt(starts[-1]))
    return attempts


def _retried(starts: list[Mapping[str, Any]]) -> list[Attempt]:
    """The attempts of ``starts`` but the last: each ended before the next started."""
    attempts = []
    for number, (line, following) in enumerate(zip(starts, starts[1:]), 1):
        attempt = _attempt(line)
        attempt.state, attempt.end = RETRIED, _number(following.get("start_time"))
        attempt.reason = (f"attempt {number}: retried; it ended before attempt {number + 1} "
                          "started (its end is not in the journal)")
        attempts.append(attempt)
    return attempts


def _attempt(entry: Mapping[str, Any]) -> Attempt:
    return attempt_of(entry.get("run"), entry.get("recipe"), entry.get("id"),
                      entry.get("command"), entry)


def attempt_of(run: Any, recipe: Any, job_id: Any, command: Any,
               results: Mapping[str, Any]) -> Attempt:
    """The attempt a journal line of this run, recipe, job and command gives, whose other
    keys (state, host, times...) are ``results``: a line, or a job's results."""
    start, end = _number(results.get("start_time")), _number(results.get("end_time"))
    state = str(results.get("state") or "unknown")
    if state == _RUNNING:
        end = None  # its run died while it ran: when it ended is unknown
    returncode, reason = results.get("returncode"), results.get("reason")
    return Attempt(str(run or ""), str(recipe or ""),
                   job_id if isinstance(job_id, int) else -1, str(results.get("host") or "?"),
                   state, start, end, returncode if isinstance(returncode, int) else None,
                   None if reason is None else str(reason), str(command or ""))


def ended_attempt(run: str, recipe: str, job_id: int, command: str,
                  results: Mapping[str, Any]) -> Attempt:
    """:func:`attempt_of` for a job of this process that ended once: its results are as
    lofarexec wrote them (times are floats, the state is final), so nothing is converted;
    anything else (a job that never started) goes the long way."""
    get = results.get
    start, end, returncode = get("start_time"), get("end_time"), get("returncode")
    if type(start) is not float or type(end) is not float or (
            returncode is not None and type(returncode) is not int):
        return attempt_of(run, recipe, job_id, command, results)
    reason = get("reason")
    return Attempt(run, recipe, job_id, results["host"], results["state"], start, end,
                   returncode, None if reason is None else str(reason), command)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def assign_lanes(attempts: list[Attempt]) -> list[Attempt]:
    """Give each attempt that ran the lowest lane of its host free at its start; returns
    ``attempts``."""
    lane_ends: dict[str, list[float]] = collections.defaultdict(list)
    for attempt in sorted((a for a in attempts if a.start is not None),
                          key=lambda a: a.start or 0.0):
        assert attempt.start is not None
        ends = lane_ends[attempt.host]
        lane = next((n for n, end in enumerate(ends) if end <= attempt.start), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = attempt.end if attempt.end is not None else float("inf")
        attempt.lane = lane
    return attempts


def duration_text(seconds: float | None) -> str:
    """``850ms``, ``4.2s``, ``3m10s``, ``2h05m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def clock(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.datetime.fromtimestamp(epoch).isoformat(
        sep=" ", timespec="seconds")


def counts_text(counts: Mapping[str, int]) -> str:
    """``38 succeeded, 2 failed``."""
    return ", ".join(f"{number} {state}" for state, number in counts.items()) or "no jobs"


def render_text(report: RunReport, *, failures: int = 20, tail_lines: int = 5) -> str:
    """The report for a terminal: summary, per-host table, failed attempts with reasons."""
    span = report.span
    lines = [f"job directory {report.job_directory}: {len(report.runs)} run(s), "
             f"{len(report.attempts)} job attempts: {counts_text(report.counts)}"]
    if span:
        lines.append(f"from {clock(span[0])} to {clock(span[1])} "
                     f"(wall time {duration_text(span[1] - span[0])})")
    hosts = report.hosts
    if hosts:
        width = max(len("host"), *(len(h.host) for h in hosts))
        lines += ["", f"{'host':<{width}}  {'jobs':>6}  {'failed':>6}  {'slots':>5}  "
                  f"{'mean':>8}  {'max':>8}"]
        lines += [f"{h.host:<{width}}  {h.jobs:>6}  {h.failures:>6}  {h.lanes:>5}  "
                  f"{duration_text(h.mean_duration):>8}  {duration_text(h.max_duration):>8}"
                  for h in hosts]
    failed = report.failed
    if failed:
        lines += ["", f"{len(failed)} failed job attempt(s):"]
        for attempt in failed[:failures]:
            lines.append("  " + failure_line(attempt))
            tail = report.tail(attempt)
            if tail is None:
                lines.append("    output: " + TAIL_ELSEWHERE.format(id=attempt.job_id))
            lines += [f"    | {line}" for line in tail_of(tail, tail_lines)]
        if len(failed) > failures:
            lines.append(f"  ... and {len(failed) - failures} more")
    return "\n".join(lines) + "\n"


def failure_line(attempt: Attempt, with_run: bool = True) -> str:
    """``job 7 (run ...) on node2: failed, exit status 3, after 4.2s: reason``."""
    status = "no exit status" if attempt.returncode is None else f"exit status {attempt.returncode}"
    run = f" (run {attempt.run})" if with_run else ""
    return (f"job {attempt.job_id}{run} on {attempt.host}: {attempt.state}, "
            f"{status}, after {duration_text(attempt.duration)}: {attempt.reason or 'no reason'}")


def tail_of(text: str | None, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of a job's output or stderr, control characters
    shown as ``\\xNN`` (a node's escape sequences must not reach the reader's terminal)."""
    kept = [line for line in (text or "").rstrip().splitlines() if line.strip()][-lines:]
    return [line.translate(_CONTROL) for line in kept]


def write_report(report: RunReport, path: str | Path, text_format: bool = False) -> Path:
    """Write the report (HTML, or text) whole: to a temporary file, then renamed into place."""
    from lofarexec.run.report_html import render_html

    path = Path(path)
    content = render_text(report) if text_format else render_html(report)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path

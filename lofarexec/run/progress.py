"""Live progress of a ``_schedule_jobs`` call: a plugin of the job hooks, like the journal.

The job hooks only update counters (a few integer operations per job); nothing is drawn per
job. On a terminal, rich's :class:`~rich.live.Live` redraws an overall bar (done, failed,
running, queued, an estimate of the time left) and a line per host, the busiest
:data:`HOST_LINES` when there are more, from its own refresh thread; while it is shown, the
console log handlers write through it, so log lines are printed whole above the bar. Off a
terminal (a log file, CI) a timer logs ``progress: 12/40 done, 2 failed, 4 running, 22 queued,
eta 3m10s`` every ``[logging] progress_interval`` seconds. ``--quiet`` leaves this plugin out.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

from lofarexec.context import RunContext
from lofarexec.job import SUCCEEDED, ComputeJob
from lofarexec.plugin.spec import hookimpl

#: Seconds between two progress lines in the log when not on a terminal (``progress_interval``).
DEFAULT_INTERVAL = 60.0
#: Host lines shown under the bar; with more hosts, the busiest ones.
HOST_LINES = 8
#: Redraws per second of the live display (on rich's refresh thread).
REFRESH_PER_SECOND = 4


def format_duration(seconds: float) -> str:
    """``3m10s``, ``1h02m``, ``45s``: short enough for a progress line."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressReporter:
    """Counts jobs as they start and end; shows them live on a terminal, or logs a line."""

    def __init__(self, logger: logging.Logger, *, interval: float = DEFAULT_INTERVAL,
                 stream: IO[str] | None = None, terminal: bool | None = None) -> None:
        self.logger = logger
        self.interval = interval
        self.stream = stream
        self.terminal = terminal
        self.total = self.succeeded = self.failed = 0
        self.running: dict[int | None, str | None] = {}
        """The running jobs' hosts, by job id."""
        self.hosts: dict[str | None, list[int]] = {}
        """Per host: [running, succeeded, failed]."""
        self.started_at = time.monotonic()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._live: Any = None
        self._swapped: list[tuple[logging.StreamHandler[Any], IO[str]]] = []

    # -- hooks: counters only -----------------------------------------------------------------
    @hookimpl
    def lofarexec_run_started(self, run: RunContext, jobs: list[ComputeJob]) -> None:
        if run.dry_run:
            return
        self.total, self.succeeded, self.failed = len(jobs), 0, 0
        self.running, self.hosts = {}, {}
        self.started_at = time.monotonic()
        self._stop.clear()
        stream = self.stream or sys.stderr
        terminal = self.terminal if self.terminal is not None else _isatty(stream)
        if terminal:
            self._start_live(stream)
        else:
            self._timer = threading.Thread(target=self._log_lines, name="lofarexec-progress",
                                           daemon=True)
            self._timer.start()

    @hookimpl
    def lofarexec_job_started(self, job: ComputeJob) -> None:
        previous = self.running.get(job.id, False)
        if previous is not False:  # a new attempt: the old one no longer runs
            self.hosts[previous][0] -= 1
        self.running[job.id] = job.host
        counts = self.hosts.get(job.host)
        if counts is None:
            counts = self.hosts[job.host] = [0, 0, 0]
        counts[0] += 1

    @hookimpl
    def lofarexec_job_finished(self, job: ComputeJob) -> None:
        host = self.running.pop(job.id, False)
        ok = job.results.get("state") == SUCCEEDED
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1
        if host is not False:  # a not_started job never ran anywhere
            counts = self.hosts[host]
            counts[0] -= 1
            counts[1 if ok else 2] += 1

    @hookimpl
    def lofarexec_run_finished(self, run: RunContext) -> None:
        if run.dry_run:
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        self.running = dict(self.running)  # a dict keeps its largest size: the report's memory
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
            for handler, stream in self._swapped:
                handler.setStream(stream)
            self._swapped = []

    # -- what is shown ------------------------------------------------------------------------
    def line(self) -> str:
        """``12/40 done, 2 failed, 4 running, 22 queued, eta 3m10s``."""
        running = len(self.running)
        queued = max(0, self.total - self.succeeded - self.failed - running)
        return (f"{self.succeeded}/{self.total} done, {self.failed} failed, {running} running, "
                f"{queued} queued, eta {self.eta()}")

    def eta(self) -> str:
        """The time left at the rate jobs have ended so far; ``?`` before the first ends."""
        ended = self.succeeded + self.failed
        if ended == 0:
            return "?"
        elapsed = time.monotonic() - self.started_at
        return format_duration(elapsed / ended * max(0, self.total - ended))

    def _log_lines(self) -> None:
        while not self._stop.wait(self.interval):
            self.logger.info("progress: %s", self.line())

    def _start_live(self, stream: IO[str]) -> None:
        from rich.console import Console  # deferred: only a terminal needs rich
        from rich.live import Live

        console = Console(file=stream, force_terminal=True)
        self._live = Live(get_renderable=self._render, console=console,
                          refresh_per_second=REFRESH_PER_SECOND, transient=False,
                          redirect_stdout=False, redirect_stderr=False)
        above = _AboveLive(console)
        for handler in logging.getLogger().handlers:  # console handlers print above the bar
            if (type(handler) is logging.StreamHandler
                    and getattr(handler, "stream", None) in (stream, sys.stderr, sys.stdout)):
                self._swapped.append((handler, handler.setStream(above) or stream))
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        overall = Table.grid(padding=(0, 1))
        overall.add_row(ProgressBar(total=max(self.total, 1),
                                    completed=self.succeeded + self.failed, width=30),
                        self.line())
        hosts = list(self.hosts.items())  # one C-level copy: the hooks may add a host
        busiest = sorted(hosts, key=lambda item: (-item[1][0], str(item[0])))[:HOST_LINES]
        per_host = Table.grid(padding=(0, 2))
        for host, (running, succeeded, failed) in busiest:
            per_host.add_row(f"  {host}", f"{running} running", f"{succeeded} done",
                             f"{failed} failed")
        if len(hosts) > HOST_LINES:
            per_host.add_row(f"  ({len(hosts) - HOST_LINES} more hosts)", "", "", "")
        return Group(overall, per_host)


class _AboveLive:
    """A log handler's stream while the live display is shown: each whole line is printed
    above it, never wrapped (``soft_wrap``), so a log line stays one line."""

    def __init__(self, console: Any) -> None:
        from rich.text import Text

        self._console = console
        self._text = Text
        self._buffer = ""

    def write(self, text: str) -> int:
        lines = (self._buffer + text).split("\n")
        self._buffer = lines.pop()
        if lines:
            self._console.print(self._text("\n".join(lines)), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        """Lines are printed as they end; a partial one waits for its end."""


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: not a terminal
        return False

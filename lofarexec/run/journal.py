"""The journal: one JSON line per job attempt, appended to ``<job_directory>/journal.jsonl``.

A plugin of the job hooks, like pytest's reporters. Resume, reports and timelines read it.

When lines reach the file: a write and a flush per line cost more than the rest of the
journal's work, and thousands of short jobs a second end on the control node, so lines are
gathered in memory and written together. A line is written out at once when

* its job did not succeed (the record one most wants after a crash);
* the previous write is :data:`FLUSH_INTERVAL` or more ago (at a low rate every line is written
  as its job ends);
* :data:`FLUSH_LINES` lines are waiting;
* the run ends, however it ends (``lofarexec_run_finished`` is called from a ``finally``).

Otherwise a timer writes the waiting lines :data:`FLUSH_INTERVAL` after the previous write. So a
control node that dies without unwinding (SIGKILL, power) loses at most the succeeded jobs of the
last 0.1 s, which a resumed run simply runs again; everything else is on disk.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import IO, Any

from lofarexec.context import RunContext
from lofarexec.job import SUMMARY_KEYS, ComputeJob, JobState
from lofarexec.plugin.spec import hookimpl

JOURNAL_NAME = "journal.jsonl"
#: Seconds a succeeded job's line may wait in memory before it is written to the file.
FLUSH_INTERVAL = 0.1
#: Lines that may wait in memory at most (bounds memory and the batch of a single write).
FLUSH_LINES = 1000
_SUCCEEDED = JobState.SUCCEEDED.value
_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps(**kw) is not


class JournalWriter:
    """Appends a line per finished job; opened at run start, closed at run end.

    The job hooks come from one thread at a time, the timer from its own: a lock orders them.
    """

    def __init__(self, flush_interval: float = FLUSH_INTERVAL,
                 flush_lines: int = FLUSH_LINES) -> None:
        self.flush_interval = flush_interval
        self.flush_lines = flush_lines
        self._file: IO[str] | None = None
        self._recipe = ""
        self._run = ""
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self._last_write = -math.inf
        self._timer: threading.Timer | None = None

    @hookimpl
    def lofarexec_run_started(self, run: RunContext) -> None:
        directory = Path(run.job_directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._file = open(directory / JOURNAL_NAME, "a", encoding="utf-8")
            self._last_write = -math.inf  # the first line is written at once
        self._recipe = run.recipe_name
        self._run = run.started

    @hookimpl
    def lofarexec_job_finished(self, job: ComputeJob) -> None:
        results = job.results
        entry = {"run": self._run, "id": job.id, "recipe": self._recipe, "command": job.command}
        entry.update({name: results.get(name) for name in SUMMARY_KEYS})
        line = _encode(entry) + "\n"
        with self._lock:
            if self._file is None:
                return
            self._waiting.append(line)
            now = time.monotonic()
            if (results.get("state") != _SUCCEEDED or len(self._waiting) >= self.flush_lines
                    or now - self._last_write >= self.flush_interval):
                self._write_waiting(now)
            elif self._timer is None:
                delay = self._last_write + self.flush_interval - now
                self._timer = threading.Timer(delay, self._write_when_due)
                self._timer.daemon = True  # never keeps the process alive: run end writes
                self._timer.start()

    @hookimpl
    def lofarexec_run_finished(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._file is not None:
                self._write_waiting(time.monotonic())
                self._file.close()
                self._file = None

    def _write_when_due(self) -> None:
        with self._lock:
            self._timer = None
            if self._file is not None and self._waiting:
                self._write_waiting(time.monotonic())

    def _write_waiting(self, now: float) -> None:
        """Write and flush the waiting lines (the lock is held)."""
        assert self._file is not None
        if self._waiting:
            self._file.write("".join(self._waiting))
            self._file.flush()
            self._waiting.clear()
        self._last_write = now


def read_journal(job_directory: str | Path) -> list[dict[str, Any]]:
    """Every entry of a job directory's journal, oldest first."""
    path = Path(job_directory) / JOURNAL_NAME
    with open(path, encoding="utf-8") as journal:
        return [json.loads(line) for line in journal if line.strip()]

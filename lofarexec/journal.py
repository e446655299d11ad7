"""The journal: one JSON line per job attempt, appended to ``<job_directory>/journal.jsonl``.

A plugin of the job hooks, like pytest's reporters. Lines are written as jobs finish and flushed
at once, so a run that dies still leaves the record of everything that had ended. Resume,
reports and timelines read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from lofarexec.job import ComputeJob
from lofarexec.plugin.spec import hookimpl

JOURNAL_NAME = "journal.jsonl"
_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps(**kw) is not
_FIELDS = ("host", "backend", "attempts", "start_time", "end_time", "job_duration",
           "returncode", "state", "reason")


class JournalWriter:
    """Appends a line per finished job; opened at run start, closed at run end."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._recipe = ""
        self._run = ""

    @hookimpl
    def lofarexec_run_started(self, run: Any) -> None:
        directory = Path(run.job_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(directory / JOURNAL_NAME, "a", encoding="utf-8")
        self._recipe = run.recipe_name
        self._run = run.started

    @hookimpl
    def lofarexec_job_finished(self, job: ComputeJob) -> None:
        if self._file is None:
            return
        entry = {"run": self._run, "id": job.id, "recipe": self._recipe, "command": job.command}
        entry.update({name: job.results.get(name) for name in _FIELDS})
        self._file.write(_encode(entry) + "\n")
        self._file.flush()

    @hookimpl
    def lofarexec_run_finished(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_journal(job_directory: str | Path) -> list[dict[str, Any]]:
    """Every entry of a job directory's journal, oldest first."""
    path = Path(job_directory) / JOURNAL_NAME
    with open(path, encoding="utf-8") as journal:
        return [json.loads(line) for line in journal if line.strip()]

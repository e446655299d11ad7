"""The journal plugin: when lines reach the file, and that none is ever lost at run end."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from lofarexec.job import ComputeJob
from lofarexec.run.journal import JOURNAL_NAME, JournalWriter, read_journal


def finished(index: int, state: str = "succeeded") -> ComputeJob:
    job = ComputeJob("node1", "/bin/true")
    job.id = index
    job.results = {"host": "node1", "backend": "local", "attempts": 1, "start_time": 1.0,
                   "end_time": 2.5, "job_duration": 1.5, "returncode": 0 if state ==
                   "succeeded" else 1, "state": state, "reason": None}
    return job


@pytest.fixture
def run(tmp_path: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(job_directory=tmp_path / "jobs", recipe_name="rec",
                                 started="2026-01-01T00:00:00.000")


def lines_on_disk(run) -> int:
    path = Path(run.job_directory) / JOURNAL_NAME
    return path.read_text().count("\n") if path.exists() else 0


def test_every_line_is_on_disk_at_run_end(run):
    writer = JournalWriter(flush_interval=3600, flush_lines=10_000)
    writer.lofarexec_run_started(run=run)
    for index in range(500):
        writer.lofarexec_job_finished(job=finished(index))
    assert lines_on_disk(run) == 1  # the first is written at once, the rest wait
    writer.lofarexec_run_finished()
    entries = read_journal(run.job_directory)
    assert [entry["id"] for entry in entries] == list(range(500))
    assert entries[0] == {"run": run.started, "id": 0, "recipe": "rec", "command": "/bin/true",
                          "host": "node1", "backend": "local", "attempts": 1,
                          "start_time": 1.0, "end_time": 2.5, "job_duration": 1.5,
                          "returncode": 0, "state": "succeeded", "reason": None}
    writer.lofarexec_run_finished()  # twice: harmless


def test_a_failure_is_written_at_once_with_what_waited_before_it(run):
    writer = JournalWriter(flush_interval=3600)
    writer.lofarexec_run_started(run=run)
    for index in range(3):
        writer.lofarexec_job_finished(job=finished(index))
    writer.lofarexec_job_finished(job=finished(3, "failed"))
    assert lines_on_disk(run) == 4
    writer.lofarexec_run_finished()


def test_a_full_batch_is_written(run):
    writer = JournalWriter(flush_interval=3600, flush_lines=10)
    writer.lofarexec_run_started(run=run)
    for index in range(25):
        writer.lofarexec_job_finished(job=finished(index))
    assert lines_on_disk(run) == 21  # the first alone, then two batches of ten
    writer.lofarexec_run_finished()
    assert lines_on_disk(run) == 25


def test_waiting_lines_are_written_within_the_interval(run):
    writer = JournalWriter(flush_interval=0.05)
    writer.lofarexec_run_started(run=run)
    writer.lofarexec_job_finished(job=finished(0))
    writer.lofarexec_job_finished(job=finished(1))
    timer = writer._timer
    assert timer is not None and lines_on_disk(run) == 1
    timer.join(10)  # the timer's own thread writes them, with no further line
    assert lines_on_disk(run) == 2
    writer.lofarexec_run_finished()


def test_lines_are_json_in_file_order(run):
    writer = JournalWriter()
    for batch in range(2):  # two runs append to one file
        writer.lofarexec_run_started(run=run)
        writer.lofarexec_job_finished(job=finished(batch))
        writer.lofarexec_run_finished()
    text = (Path(run.job_directory) / JOURNAL_NAME).read_text()
    assert [json.loads(line)["id"] for line in text.splitlines()] == [0, 1]

"""The journal plugin: when lines reach the file, that none is ever lost or written twice (also
on a full or read-only disk), and reading a journal that a crash left torn."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
import types
from pathlib import Path

import pytest

from lofarexec.errors import ConfigError, LofarexecError
from lofarexec.job import ComputeJob, JobResult
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
                          "event": "ended", "start_time": 1.0, "end_time": 2.5,
                          "job_duration": 1.5,
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
    flusher = writer._flusher
    assert flusher is not None and lines_on_disk(run) == 1
    wait_for_lines(run, 2)  # the journal's own thread writes them, with no further line
    for index in range(2, 5):  # later flushes: the same thread, not one per flush
        writer.lofarexec_job_finished(job=finished(index))
        wait_for_lines(run, index + 1)
        assert writer._flusher is flusher
    writer.lofarexec_run_finished()
    flusher.join(10)  # it ends with the run
    assert not flusher.is_alive() and writer._flusher is None


def wait_for_lines(run, count: int) -> None:
    deadline = time.monotonic() + 10
    while lines_on_disk(run) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert lines_on_disk(run) == count


def test_lines_are_json_in_file_order(run):
    writer = JournalWriter()
    for batch in range(2):  # two runs append to one file
        writer.lofarexec_run_started(run=run)
        writer.lofarexec_job_finished(job=finished(batch))
        writer.lofarexec_run_finished()
    text = (Path(run.job_directory) / JOURNAL_NAME).read_text()
    assert [json.loads(line)["id"] for line in text.splitlines()] == [0, 1]


def started(index: int) -> ComputeJob:
    job = ComputeJob("node1", "/bin/true")
    job.id = index
    job.results = JobResult(state="pending", host="node1", attempts=0)
    job.results.start("node1", 1.0)
    return job


def test_a_start_is_on_disk_before_the_job_runs_and_tells_running_from_never_ran(run):
    writer = JournalWriter(flush_interval=3600)
    writer.lofarexec_run_started(run=run)
    writer.lofarexec_job_started(job=started(0))
    writer.lofarexec_job_finished(job=finished(0))  # the first end line is written at once
    writer.lofarexec_job_started(job=started(1))
    writer.lofarexec_job_started(job=started(2))
    assert lines_on_disk(run) == 4  # each start at once, whatever waits
    # the control node dies here: no run end; job 3 never started
    entries = read_journal(run.job_directory)
    assert [(entry["id"], entry["state"]) for entry in entries] == [
        (0, "succeeded"), (1, "running"), (2, "running")]
    assert entries[1]["event"] == "started" and entries[1]["start_time"] == 1.0
    every = read_journal(run.job_directory, every_line=True)
    assert [(entry["id"], entry["event"]) for entry in every] == [
        (0, "started"), (0, "ended"), (1, "started"), (2, "started")]
    writer.lofarexec_run_finished()


def test_a_journal_of_older_versions_without_start_lines_reads_as_before(run):
    Path(run.job_directory).mkdir(parents=True)
    (Path(run.job_directory) / JOURNAL_NAME).write_text(
        '{"run": "r", "id": 0, "state": "succeeded"}\n{"run": "r", "id": 1, "state": "failed"}\n')
    assert [entry["state"] for entry in read_journal(run.job_directory)] == [
        "succeeded", "failed"]


def test_a_torn_last_line_is_skipped_with_a_warning(run, caplog):
    Path(run.job_directory).mkdir(parents=True)
    path = Path(run.job_directory) / JOURNAL_NAME
    path.write_text('{"run": "r", "id": 0, "state": "succeeded"}\n{"run": "r", "id": 1, "st')
    with caplog.at_level(logging.WARNING):
        entries = read_journal(run.job_directory)
    assert [entry["id"] for entry in entries] == [0]
    assert len(caplog.records) == 1 and "torn" in caplog.records[0].getMessage()


def test_a_bad_line_before_the_end_is_an_error_naming_file_and_line(run):
    Path(run.job_directory).mkdir(parents=True)
    path = Path(run.job_directory) / JOURNAL_NAME
    path.write_text('{"id": 0}\nnot json\n{"id": 2}\n')
    with pytest.raises(LofarexecError, match=f"{path}:2: not a journal line"):
        read_journal(run.job_directory)


def test_appending_to_a_torn_journal_cuts_the_torn_line_off_first(run, caplog):
    Path(run.job_directory).mkdir(parents=True)
    path = Path(run.job_directory) / JOURNAL_NAME
    path.write_text('{"run": "r", "id": 0, "state": "succeeded"}\n{"run": "r", "id"')
    writer = JournalWriter()
    with caplog.at_level(logging.WARNING):
        writer.lofarexec_run_started(run=run)
    writer.lofarexec_job_finished(job=finished(5))
    writer.lofarexec_run_finished()
    assert any("torn" in record.getMessage() for record in caplog.records)
    assert [entry["id"] for entry in read_journal(run.job_directory)] == [0, 5]


def test_a_dry_run_writes_nothing(run):
    run.dry_run = True
    writer = JournalWriter()
    writer.lofarexec_run_started(run=run)
    writer.lofarexec_job_finished(job=finished(0, "not_started"))
    writer.lofarexec_run_finished()
    assert not Path(run.job_directory).exists()


def test_a_lone_surrogate_in_a_command_reads_back_the_same(run):
    writer = JournalWriter()
    writer.lofarexec_run_started(run=run)
    job = finished(0)
    job.command = "/bin/echo \udcff"
    writer.lofarexec_job_finished(job=job)
    writer.lofarexec_run_finished()
    assert read_journal(run.job_directory)[0]["command"] == "/bin/echo \udcff"


# --------------------------------------------------------------------------- real disks


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "1m"):
    """A tmpfs of ``size`` mounted on ``folder`` (root only); unmounted afterwards."""
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        problem = f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        out.write(b"x" * max(0, free - leave))
    return filler


@pytest.mark.slow
def test_a_full_disk_gives_one_error_no_torn_line_and_no_duplicate(tmp_path, caplog):
    with small_tmpfs(tmp_path / "disk") as disk:
        run = types.SimpleNamespace(job_directory=disk / "jobs", recipe_name="rec",
                                    started="2026-01-01T00:00:00.000")
        writer = JournalWriter(flush_interval=3600, flush_lines=7)
        writer.lofarexec_run_started(run=run)
        filler = fill(disk, leave=4096)  # one page: room for some lines, then it is full
        with caplog.at_level(logging.WARNING, logger="lofarexec.run.journal"):
            for index in range(300):
                writer.lofarexec_job_started(job=started(index))
                writer.lofarexec_job_finished(job=finished(index))
                if index == 200:
                    # the disk is full: what is on it reads whole
                    on_disk = read_journal(run.job_directory, every_line=True)
                    assert 0 < len(on_disk) < 400
                    filler.unlink()  # space frees mid-run
            writer.lofarexec_run_finished()
        errors = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert len(errors) == 1, [record.getMessage() for record in errors]
        assert "cannot write the journal" in errors[0].getMessage()
        assert "resumed run" in errors[0].getMessage()
        assert "torn" not in caplog.text
        every = read_journal(run.job_directory, every_line=True)
        assert sorted((entry["id"], entry["event"]) for entry in every) == sorted(
            [(index, "started") for index in range(300)]
            + [(index, "ended") for index in range(300)])


@pytest.mark.slow
def test_a_disk_full_until_the_end_says_what_the_journal_lacks(tmp_path, caplog):
    with small_tmpfs(tmp_path / "disk") as disk:
        run = types.SimpleNamespace(job_directory=disk / "jobs", recipe_name="rec",
                                    started="2026-01-01T00:00:00.000")
        writer = JournalWriter()
        writer.lofarexec_run_started(run=run)
        fill(disk, leave=0)
        with caplog.at_level(logging.ERROR, logger="lofarexec.run.journal"):
            for index in range(50):
                writer.lofarexec_job_started(job=started(index))
                writer.lofarexec_job_finished(job=finished(index, "failed"))
            writer.lofarexec_run_finished()
        messages = [record.getMessage() for record in caplog.records]
        assert len(messages) == 2, messages  # the first failure, and what is lost at the end
        assert "lacks 100 lines" in messages[1] and "runs them again" in messages[1]
        read_journal(run.job_directory)  # whatever is there reads


@pytest.mark.slow
def test_a_read_only_job_directory_is_one_config_error(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        run = types.SimpleNamespace(job_directory=disk / "jobs", recipe_name="rec",
                                    started="2026-01-01T00:00:00.000")
        with pytest.raises(ConfigError) as excinfo:
            JournalWriter().lofarexec_run_started(run=run)
        message = str(excinfo.value)
        assert "\n" not in message and str(disk / "jobs" / JOURNAL_NAME) in message
        assert "Read-only file system" in message and "key 'job_directory'" in message


@pytest.mark.parametrize("values", [
    {"attempts": 1, "start_time": 1.5, "end_time": float("nan"), "job_duration": float("inf"),
     "returncode": True, "reason": "h\u00e9\ud800 \"q\"\n\t\x01", "state": "failed"},
    {"attempts": 0, "start_time": None, "returncode": -9, "reason": None, "state": "killed",
     "host": None, "extra": [1, {"a": None}], "n": 3},
    {"attempts": 2, "start_time": 1e300, "end_time": -0.0, "job_duration": 123456789012345678,
     "state": "succeeded", "reason": "\u2603", "out": "x" * 3},
])
def test_a_line_is_what_json_dumps_writes_of_its_entry(run, values):
    """The line is put together from pieces for speed: byte for byte json.dumps's output,
    whatever the value types (NaN, infinities, bools, surrogates, outputs)."""
    writer = JournalWriter()
    run.recipe_name, run.started = "r\u00e9c\"", "2026\n"
    writer.lofarexec_run_started(run=run)
    job = ComputeJob("node1", "/bin/true \"\u00e9\"")
    job.id, job.identity = 7, "abc"
    job.results = JobResult({"host": "node1", "backend": "local", **values})
    for event in ("started", "ended"):
        entry = {"run": run.started, "id": 7, "recipe": run.recipe_name, "command": job.command,
                 "event": event, **{key: job.results.get(key) for key in
                                    ("host", "backend", "attempts", "start_time", "end_time",
                                     "job_duration", "returncode", "state", "reason")}}
        if event == "ended":
            entry["identity"] = "abc"
            outputs = {key: value for key, value in values.items()
                       if key in ("extra", "n", "out")}
            if outputs:
                entry["outputs"] = outputs
        assert writer._line(job, event) == json.dumps(entry, ensure_ascii=False) + "\n"
    writer.lofarexec_run_finished()

"""``[remote] halt`` with real processes (the local backend): the journal has one final state
per job, and ``now`` leaves no process behind."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run.journal import read_journal
from lofarexec.run.runner import JobRunner
from tests.helpers import wait_gone, write_config

pytestmark = pytest.mark.slow


def run(tmp_path: Path, halt: str, jobs):
    path = write_config(tmp_path, f"[remote]\nmethod = local\nhalt = {halt}\n")
    config = load_config(path, job_name="night", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="night", error=error).schedule(jobs, max_per_node=2)
    entries = read_journal(config.job_directory)
    ended = [entry for entry in entries if entry.get("event") == "ended"]
    assert sorted(entry["id"] for entry in ended) == list(range(len(jobs)))
    return error, Counter(entry["state"] for entry in ended)


def test_now_kills_the_running_job_and_starts_no_other(tmp_path):
    pid_file = tmp_path / "pid"
    jobs = [ComputeJob("localhost", f"/bin/sh -c 'echo $$ > {pid_file}; exec sleep 60'"),
            ComputeJob("localhost", f"/bin/sh -c 'while [ ! -s {pid_file} ]; do sleep 0.01; "
                                    "done; exit 3'")]
    jobs += [ComputeJob("localhost", "/bin/true") for _ in range(3)]
    error, states = run(tmp_path, "now,fail=1", jobs)
    assert states == {"killed": 1, "failed": 1, "not_started": 3}
    assert wait_gone(int(pid_file.read_text()), 10)
    assert "halt = now,fail=1" in jobs[0].results["reason"]
    assert error.is_set()


def test_soon_lets_the_running_job_finish(tmp_path):
    go = tmp_path / "go"
    jobs = [ComputeJob("localhost", f"/bin/sh -c 'while [ ! -e {go} ]; do sleep 0.01; done'"),
            ComputeJob("localhost", f"/bin/sh -c 'touch {go}; exit 3'")]
    jobs += [ComputeJob("localhost", "/bin/true") for _ in range(3)]
    error, states = run(tmp_path, "soon,fail=1", jobs)
    assert states == {"succeeded": 1, "failed": 1, "not_started": 3}
    assert jobs[4].results["reason"].endswith("(halt = soon,fail=1)) before it started")
    assert error.is_set()

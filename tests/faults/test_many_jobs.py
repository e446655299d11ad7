"""1,000 jobs on local processes, 10 % of them failing at random (a fixed seed): with
``retry_exit_codes`` the retried ones succeed on their second attempt, the ones failing with
a status not listed fail once; every job has exactly one final state in the journal, the
error Event says whether any failed, and no process of the run is left (none on this machine
has the run's ``LOFAREXEC_RUN`` marker in its environment)."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

from lofarexec.channel.protocol import ENV_RUN
from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run import audit
from lofarexec.run.journal import ENDED, read_journal
from lofarexec.run.runner import JobRunner
from tests.faults.runs import marked_processes
from tests.helpers import write_config

pytestmark = pytest.mark.slow

JOBS = 1000
SEED = 20261205


def flaky_jobs(folder: Path) -> tuple[list[ComputeJob], set[int], set[int]]:
    """Jobs of which 10 % fail: most with 75 on their first attempt only (retried), one in
    ten of those with 3 every time (not retried); the ids of each kind."""
    chosen = random.Random(SEED).sample(range(JOBS), JOBS // 10)
    hard = set(chosen[::10])
    retried = set(chosen) - hard
    jobs = []
    for number in range(JOBS):
        if number in hard:
            command = "/bin/sh -c 'exit 3'"
        elif number in retried:
            command = f"/bin/sh -c 'mkdir {folder}/{number} 2>/dev/null && exit 75; exit 0'"
        else:
            command = "/bin/true"
        jobs.append(ComputeJob(f"host{number % 8}", command))
    return jobs, retried, hard


def test_a_thousand_jobs_with_ten_percent_failures_and_retry_exit_codes(tmp_path, monkeypatch):
    marker = secrets.token_hex(8)  # the run's LOFAREXEC_RUN, known here to look for it after
    monkeypatch.setattr(audit, "run_marker", lambda: marker)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    jobs, retried, hard = flaky_jobs(attempts)
    config = load_config(write_config(tmp_path, "[remote]\nmethod = local\n"
                                                "retry_exit_codes = 75\nmax_per_node = 4\n"),
                         job_name="many", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="many", error=error, progress=False).schedule(jobs)
    ended = [line for line in read_journal(config.job_directory, every_line=True)
             if line.get("event") == ENDED]
    assert sorted(line["id"] for line in ended) == list(range(JOBS))  # one end each
    last = {entry["id"]: entry for entry in read_journal(config.job_directory)}
    assert Counter(entry["state"] for entry in last.values()) == {
        "succeeded": JOBS - len(hard), "failed": len(hard)}
    assert all(last[number]["reason"] for number in hard)
    assert {number: job.results["attempts"] for number, job in enumerate(jobs)
            if job.results["attempts"] != 1} == {number: 2 for number in retried}
    assert error.is_set()  # the hard failures
    assert len(list(attempts.iterdir())) == len(retried)
    assert marked_processes(marker) == []  # no process of the run is left


def test_the_leftover_check_finds_a_marked_process():
    """The check above can fail: a live process with the marker is found, and only it."""
    marker = secrets.token_hex(8)
    marked = subprocess.Popen(["sleep", "60"], env={**os.environ, ENV_RUN: marker})
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, ENV_RUN: marker + "0"})
    try:
        assert marked_processes(marker) == [marked.pid]
    finally:
        for process in (marked, other):
            process.kill()
            process.wait()
    assert marked_processes(marker) == []

"""Live progress: counters from the job hooks; a bar on a terminal, a log line off one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lofarexec.context import RunContext
from lofarexec.job import ComputeJob, JobResult
from lofarexec.run.progress import ProgressReporter, format_duration
from tests.helpers import REPO, write_config

LONG = "X" * 150
MASTER = """\
import sys
from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

class progressing(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        ok = "sh -c 'sleep 0.4'"
        bad = "sh -c 'sleep 0.4; echo {long} >&2; exit 3'"
        jobs = [ComputeJob(f"h{{i % 2}}", bad if i == 1 else ok) for i in range(6)]
        self._schedule_jobs(jobs, max_per_node=2)
        return 0

if __name__ == "__main__":
    sys.exit(progressing().main())
"""


def test_the_line_counts_done_failed_running_queued():
    reporter = ProgressReporter(__import__("logging").getLogger("t"), terminal=False,
                                interval=3600)
    run = RunContext("r", "local", Path("/nonexistent"), ("127.0.0.1", 1))
    jobs = [ComputeJob("h1", "true") for _ in range(4)]
    for index, job in enumerate(jobs):
        job.id = index
    reporter.lofarexec_run_started(run=run, jobs=jobs)
    try:
        for job in jobs[:3]:
            reporter.lofarexec_job_started(job=job)
        jobs[0].results = JobResult.not_run("h1", "x")
        jobs[0].results["state"] = "succeeded"
        reporter.lofarexec_job_finished(job=jobs[0])
        jobs[1].results = JobResult.not_run("h1", "x")
        jobs[1].results["state"] = "failed"
        reporter.lofarexec_job_finished(job=jobs[1])
        assert re.fullmatch(r"1/4 done, 1 failed, 1 running, 1 queued, eta \d+s",
                            reporter.line()), reporter.line()
        assert reporter.hosts["h1"] == [1, 1, 1]
    finally:
        reporter.lofarexec_run_finished(run=run)
    assert format_duration(190) == "3m10s" and format_duration(3720) == "1h02m"


def _recipe(tmp_path: Path, interval: str = "60") -> tuple[Path, Path]:
    master = tmp_path / "progressing.py"
    master.write_text(MASTER.format(long=LONG))
    config = write_config(tmp_path, f"[logging]\nprogress_interval = {interval}\n")
    return master, config


@pytest.mark.slow
def test_off_a_terminal_a_progress_line_is_logged_every_interval(tmp_path):
    master, config = _recipe(tmp_path, interval="0.05")
    result = subprocess.run([sys.executable, str(master), "-j", "p", "-v", "-c", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = re.findall(r"progress: \d+/6 done, \d+ failed, \d+ running, \d+ queued, eta \S+",
                       result.stderr)
    assert lines, result.stderr
    assert "\x1b[" not in result.stderr  # no terminal codes in a log


@pytest.mark.slow
def test_quiet_turns_progress_off(tmp_path):
    master, config = _recipe(tmp_path, interval="0.05")
    result = subprocess.run([sys.executable, str(master), "-j", "p", "-v", "--quiet", "-c",
                             str(config)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "progress:" not in result.stderr
    assert f"stderr: {LONG}" in result.stderr


@pytest.mark.slow
def test_on_a_terminal_a_bar_is_drawn_and_log_lines_stay_whole(tmp_path):
    master, config = _recipe(tmp_path)
    primary, secondary = os.openpty()
    try:
        process = subprocess.Popen([sys.executable, str(master), "-j", "p", "-c", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                                   cwd=REPO, env={**os.environ, "TERM": "xterm"})
    finally:
        os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: every holder of the terminal's other end closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        assert process.wait(timeout=120) == 0
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in raw  # rich's bar
    assert re.search(r"6/6 done|5/6 done, 1 failed", raw), raw
    assert "h0" in raw and "h1" in raw  # a line per host
    # the failed job's stderr line is printed whole, on one line, not cut by the live display
    assert re.search(rf"job 1 stderr: {LONG}\r?\n", raw), raw

"""The end-of-run reporter keeps little per job, yet reports what the journal's lines say."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lofarexec.context import RunContext
from lofarexec.job import ComputeJob, JobResult, JobState
from lofarexec.run.journal import ENDED, STARTED
from lofarexec.run.report import assign_lanes, attempts_from_lines
from lofarexec.run.summary import RunReporter, _line


def test_the_reporter_s_attempts_are_those_of_the_lines_the_hooks_saw(tmp_path: Path):
    """Retried, failed, never started and still running jobs, over two runs of one process:
    the report's attempts equal those read from the lines as each hook call would write them."""
    reporter = RunReporter(logging.getLogger("test-summary"))
    seen: list[dict] = []
    for run_number in range(2):
        run = RunContext(f"recipe{run_number}", "mock", tmp_path, ("127.0.0.1", 1),
                         dry_run=False)
        jobs = [ComputeJob(f"h{index % 2}", "/bin/true") for index in range(5)]
        for index, job in enumerate(jobs):
            job.id = index
            job.results = JobResult.pending(job.host, "mock")

        def started(job: ComputeJob, host: str) -> None:
            job.results.start(host, time.time())
            seen.append(_line(run, job, STARTED))
            reporter.lofarexec_job_started(job=job)

        def finished(job: ComputeJob, state: JobState, returncode: int | None) -> None:
            job.results.finish(state, None if state is JobState.SUCCEEDED else "why",
                               returncode=returncode, output="out", errors="err", now=time.time())
            seen.append(_line(run, job, ENDED))
            reporter.lofarexec_job_finished(run=run, job=job)

        started(jobs[0], "h0")
        started(jobs[1], "h1")
        finished(jobs[1], JobState.FAILED, 3)
        started(jobs[0], "h1")  # job 0 retried on another host, then retried again
        started(jobs[0], "h0")
        started(jobs[2], "h0")
        finished(jobs[0], JobState.SUCCEEDED, 0)
        finished(jobs[2], JobState.SUCCEEDED, 0)
        jobs[3].results.stopped("run stopped (test) before it started")
        seen.append(_line(run, jobs[3], ENDED))
        reporter.lofarexec_job_finished(run=run, job=jobs[3])
        started(jobs[4], "h0")  # still running as the run ends
        reporter.lofarexec_run_finished(run=run, jobs=jobs)

    expected = assign_lanes(attempts_from_lines(seen))
    assert [a.state for a in expected if a.job_id == 0] == ["retried", "retried", "succeeded"] * 2
    # sorted: a job left running is listed after its own run's, not after every run's
    assert sorted(map(repr, reporter._attempts)) == sorted(map(repr, expected))
    assert (tmp_path / "report.html").is_file()
    assert not reporter._running and not reporter._ended and not reporter._earlier


def test_batches_begun_within_one_millisecond_have_distinct_stamps(tmp_path: Path):
    """Journal lines are keyed on (batch stamp, job id): back-to-back batches never share one."""
    stamps = [RunContext("recipe", "mock", tmp_path, ("127.0.0.1", 1)).started
              for _ in range(50)]
    assert len(set(stamps)) == len(stamps)
    assert stamps == sorted(stamps)

"""The halt policy with the in-process mock backend, and its pipeline.cfg parsing."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob, JobState
from lofarexec.run.halt import HaltPolicy, halt_policy
from lofarexec.run.retry import scheduler_options
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.testing.mock import MockBackend
from tests.helpers import write_config


def config_with(directory, **remote: str):
    directory.mkdir(exist_ok=True)
    lines = "".join(f"{key} = {value}\n" for key, value in remote.items())
    path = write_config(directory, f"[remote]\nmethod = local\n{lines}")
    return load_config(path, job_name="j", start_time="t")


def prepare(job: ComputeJob) -> LaunchRequest:
    assert job.id is not None and job.host is not None
    return LaunchRequest(job.id, job.host, ("node",), {}, "token")


def fail_odd(request: LaunchRequest) -> Outcome:
    return Outcome(request.job_id % 2)


def states(jobs) -> Counter[JobState]:
    return Counter(job.state for job in jobs)


def test_never_runs_everything_and_sets_the_error_event():
    jobs = [ComputeJob("a", "node") for _ in range(10)]
    backend = MockBackend()
    backend.behaviour = fail_odd
    scheduler = Scheduler(backend, prepare, limits=Limits(per_host=1))
    scheduler.run(jobs)
    assert states(jobs) == {JobState.SUCCEEDED: 5, JobState.FAILED: 5}
    assert scheduler.error.is_set()


@pytest.mark.parametrize("text", ["soon,fail=2", "soon,fail=20%"])
def test_soon_starts_nothing_new_after_the_limit(text):
    jobs = [ComputeJob("a", "node") for _ in range(10)]
    backend = MockBackend()
    backend.behaviour = fail_odd
    Scheduler(backend, prepare, limits=Limits(per_host=1), halt=halt_policy(text)).run(jobs)
    assert states(jobs) == {JobState.SUCCEEDED: 2, JobState.FAILED: 2, JobState.NOT_STARTED: 6}
    reason = jobs[-1].results["reason"]
    assert reason == (f"run stopped (job 3 on a failed; 2 jobs did not succeed (halt = {text}))"
                      " before it started")


def test_soon_lets_running_jobs_finish_and_now_kills_them():
    for mode, running_state in (("soon", JobState.SUCCEEDED), ("now", JobState.KILLED)):
        jobs = [ComputeJob("a", "node"), ComputeJob("b", "node"), ComputeJob("b", "node")]
        backend = MockBackend()
        backend.hold = True
        scheduler = Scheduler(backend, prepare, limits=Limits(per_host=1),
                              halt=HaltPolicy(mode, count=1))

        def finish_in_order() -> None:
            with backend.started:
                backend.started.wait_for(lambda: len(backend._held) == 2, timeout=10)
            backend.finish(1, 3)  # b's first job fails: the limit is reached
            backend.finish(0, 0)  # a's job: killed by now (then this does nothing)

        finisher = threading.Thread(target=finish_in_order)
        finisher.start()
        scheduler.run(jobs)
        finisher.join()
        assert jobs[0].state is running_state, mode
        assert jobs[1].state is JobState.FAILED
        assert jobs[2].state is JobState.NOT_STARTED


def test_fail_fast_is_now_fail_1():
    scheduler = Scheduler(MockBackend(), prepare, fail_fast=True)
    assert scheduler.halt == HaltPolicy("now", count=1)


@pytest.mark.parametrize(("text", "policy"), [
    ("never", HaltPolicy()), ("soon,fail=3", HaltPolicy("soon", count=3)),
    ("NOW, fail=5%", HaltPolicy("now", percent=5.0)),
])
def test_halt_values(text, policy):
    assert halt_policy(text) == policy


def test_a_percentage_limit_is_at_least_one_job():
    assert HaltPolicy("now", percent=5.0).limit(10) == 1
    assert HaltPolicy("now", percent=5.0).limit(1000) == 50


@pytest.mark.parametrize("text", ["sometimes", "soon", "soon,fail=0", "now,fail=x",
                                  "now,fail=200%", "soon,success=1"])
def test_a_halt_typo_is_one_config_error_line(tmp_path, text):
    config = config_with(tmp_path, halt=text)
    with pytest.raises(ConfigError) as caught:
        scheduler_options(config)
    message = str(caught.value)
    assert "[remote]" in message and "'halt'" in message and "\n" not in message
    assert str(tmp_path) in message


def test_the_other_keys_are_read(tmp_path):
    config = config_with(tmp_path, retries="4", retry_exit_codes="75, 111", host_failures="5",
                         host_down_after="30")
    options = scheduler_options(config)
    assert options["retry"].retries == 4
    assert options["retry"].retry_exit_codes == frozenset({75, 111})
    assert (options["host_failures"], options["host_down_after"]) == (5, 30.0)
    defaults = scheduler_options(config_with(tmp_path / "d"))
    assert defaults["retry"].retries == 2 and defaults["halt"] == HaltPolicy()

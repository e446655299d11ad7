"""Retries with the in-process mock backend: which attempts run again, and how they are told."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.job import ComputeJob, JobState
from lofarexec.run.retry import RetryPolicy
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.testing.mock import MockBackend


@pytest.fixture(autouse=True, params=[False, True], ids=["starts-in-role", "parallel-starts"])
def start_mode(request, monkeypatch):
    """Every test twice: backends started while processing, and started outside that role."""
    monkeypatch.setattr(MockBackend, "parallel_start", request.param)
    return request.param

FAST = RetryPolicy(retries=2, first_delay=0.001, jitter=lambda: 1.0)


def prepare(job: ComputeJob) -> LaunchRequest:
    assert job.id is not None and job.host is not None
    return LaunchRequest(job.id, job.host, ("node",), {}, "token")


class Script:
    """Behaviour: each job's attempts end as listed (the last entry repeats)."""

    def __init__(self, **per_job: list[Outcome]) -> None:
        self.per_job = {int(key[1:]): outcomes for key, outcomes in per_job.items()}
        self.attempts: Counter[int] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: LaunchRequest) -> Outcome:
        with self.lock:
            attempt = self.attempts[request.job_id]
            self.attempts[request.job_id] += 1
        outcomes = self.per_job.get(request.job_id, [Outcome(0)])
        return outcomes[min(attempt, len(outcomes) - 1)]


class Events:
    def __init__(self) -> None:
        self.started: Counter[int] = Counter()
        self.finished: Counter[int] = Counter()

    def job_started(self, job: ComputeJob) -> None:
        self.started[job.id] += 1

    def job_finished(self, job: ComputeJob) -> None:
        self.finished[job.id] += 1


def run(jobs, script, retry=FAST, **options):
    backend = MockBackend()
    backend.behaviour = script
    events = Events()
    scheduler = Scheduler(backend, prepare, observer=events, retry=retry, **options)
    scheduler.run(jobs)
    return scheduler, events


DROPPED = Outcome(None, transport_error="connection dropped")


def test_a_transport_error_is_retried_and_every_attempt_is_told():
    jobs = [ComputeJob("a", "node")]
    scheduler, events = run(jobs, Script(j0=[DROPPED, Outcome(0)]))
    results = jobs[0].results
    assert results["state"] == "succeeded" and results["attempts"] == 2
    assert "attempt 1 transport_error: connection dropped" in results["reason"]
    assert events.started[0] == 2 and events.finished[0] == 1
    assert not scheduler.error.is_set()


def test_retries_run_out_and_the_last_error_is_the_reason():
    jobs = [ComputeJob("a", "node")]
    scheduler, _ = run(jobs, Script(j0=[DROPPED]), host_failures=10)
    assert jobs[0].state is JobState.TRANSPORT_ERROR
    assert jobs[0].results["attempts"] == 3
    assert jobs[0].results["reason"] == "connection dropped"
    assert scheduler.error.is_set()


def test_without_retries_a_transport_error_is_final():
    jobs = [ComputeJob("a", "node")]
    run(jobs, Script(j0=[DROPPED, Outcome(0)]), retry=RetryPolicy())
    assert jobs[0].state is JobState.TRANSPORT_ERROR and jobs[0].results["attempts"] == 1


def test_a_job_of_its_own_retries_overrides_the_run():
    jobs = [ComputeJob("a", "node", retries=0), ComputeJob("b", "node", retries=3)]
    run(jobs, Script(j0=[DROPPED, Outcome(0)], j1=[DROPPED] * 3 + [Outcome(0)]),
        host_failures=10)
    assert jobs[0].state is JobState.TRANSPORT_ERROR
    assert jobs[1].state is JobState.SUCCEEDED and jobs[1].results["attempts"] == 4


@pytest.mark.parametrize(("codes", "state", "attempts"), [
    (frozenset(), JobState.FAILED, 1),
    (frozenset({75}), JobState.SUCCEEDED, 2),
    (frozenset({1}), JobState.FAILED, 1),
])
def test_a_failed_node_is_retried_only_for_the_listed_statuses(codes, state, attempts):
    jobs = [ComputeJob("a", "node")]
    policy = RetryPolicy(retries=2, retry_exit_codes=codes, first_delay=0.001)
    run(jobs, Script(j0=[Outcome(75), Outcome(0)]), retry=policy)
    assert jobs[0].state is state and jobs[0].results["attempts"] == attempts


def test_a_timed_out_job_is_not_retried():
    backend = MockBackend()
    backend.hold = True  # never ends by itself: only the timeout ends it
    jobs = [ComputeJob("a", "node", timeout=0.01)]
    Scheduler(backend, prepare, retry=FAST).run(jobs)
    assert jobs[0].state is JobState.TIMED_OUT and jobs[0].results["attempts"] == 1


def test_waits_grow_exponentially_with_jitter_and_a_ceiling():
    policy = RetryPolicy(first_delay=1.0, max_delay=5.0, jitter=lambda: 1.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert RetryPolicy(first_delay=1.0, jitter=lambda: 0.0).delay(1) == 0.5


def test_limits_hold_while_retrying():
    jobs = [ComputeJob("a", "node") for _ in range(6)]
    script = Script(**{f"j{i}": [DROPPED, Outcome(0)] for i in range(6)})
    run(jobs, script, limits=Limits(per_host=2), host_failures=10)
    assert all(job.state is JobState.SUCCEEDED for job in jobs)


def test_a_program_that_cannot_start_is_the_jobs_failure_not_the_hosts():
    missing = Outcome(None, transport_error="node1: cannot start '/no/such': No such file")
    jobs = [ComputeJob("a", "node") for _ in range(5)]
    script = Script(j0=[missing, Outcome(0)])
    run(jobs, script, limits=Limits(per_host=1))
    assert jobs[0].state is JobState.TRANSPORT_ERROR and jobs[0].results["attempts"] == 1
    assert all(job.state is JobState.SUCCEEDED for job in jobs[1:])  # the host was not paused

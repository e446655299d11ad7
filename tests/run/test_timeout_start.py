"""A job's time limit counts from when its backend has it started, and a kill is given up on.

The clock the scheduler reads is a fake one that the tests move on, and the deadline checks are
delivered by the tests: nothing here waits for real time to pass.
"""

from __future__ import annotations

import threading
import time

import pytest

import lofarexec.run.attempt
import lofarexec.run.batch
from lofarexec.backend import LaunchRequest, Outcome, report_running
from lofarexec.errors import PipelineQuit
from lofarexec.job import ComputeJob
from lofarexec.run.batch import KILL_REPORT_TIMEOUT
from lofarexec.run.retry import RetryPolicy
from lofarexec.run.scheduler import _DEADLINES, Scheduler
from lofarexec.testing.mock import MockBackend


class FakeTime:
    """``time`` as the scheduler's modules see it: ``monotonic`` moves on when told."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    @staticmethod
    def time() -> float:
        return time.time()


@pytest.fixture
def clock(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(lofarexec.run.batch, "time", fake)
    monkeypatch.setattr(lofarexec.run.attempt, "time", fake)
    return fake


@pytest.fixture(params=[False, True], ids=["starts-in-role", "parallel-starts"])
def parallel(request, monkeypatch):
    monkeypatch.setattr(MockBackend, "parallel_start", request.param)
    return request.param


class _Handle:
    def __init__(self, backend: Held, job_id: int, starts_later: bool) -> None:
        self.backend = backend
        self.job_id = job_id
        self.starts_later = starts_later

    def kill(self) -> None:
        with self.backend.started:
            self.backend.kills.append(self.job_id)
            self.backend.started.notify_all()
        if not self.backend.deaf:
            self.backend.finish(self.job_id, Outcome(-15))


class Held(MockBackend):
    """Jobs held until the test ends them; ``starts_later``: each waits (for a connection, say)
    until the test calls :meth:`runs`; ``slow_start``: seconds ``start`` takes on the fake
    clock; ``deaf``: kills are never confirmed."""

    hold = True

    def __init__(self, clock: FakeTime, *, starts_later: bool = False, slow_start: float = 0.0,
                 deaf: bool = False) -> None:
        super().__init__()
        self.clock = clock
        self.starts_later = starts_later
        self.slow_start = slow_start
        self.deaf = deaf
        self.kills: list[int] = []

    def start(self, request, report):  # type: ignore[no-untyped-def, override]
        self.clock.offset += self.slow_start
        super().start(request, report)
        return _Handle(self, request.job_id, self.starts_later)

    def runs(self, job_id: int) -> None:
        with self._lock:
            report = self._held[job_id]
        report_running(report)

    def wait_started(self, count: int = 1) -> None:
        with self.started:
            assert self.started.wait_for(lambda: len(self.requests) >= count, timeout=10)


def prepare(job: ComputeJob) -> LaunchRequest:
    assert job.id is not None and job.host is not None
    return LaunchRequest(job.id, job.host, ("node",), {}, "token")


def run_in_thread(scheduler: Scheduler, jobs: list[ComputeJob]) -> tuple[threading.Thread,
                                                                          list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            scheduler.run(jobs)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def check_deadlines(scheduler: Scheduler, clock: FakeTime, seconds: float) -> None:
    """Move the clock on and have the scheduler look at its deadlines (as its wait would)."""
    clock.offset += seconds
    scheduler.deliver(_DEADLINES, None)


def test_a_job_waiting_to_start_is_not_timed_out_for_the_wait(clock, parallel):
    backend = Held(clock, starts_later=True)
    job = ComputeJob("h", "node", timeout=50)
    scheduler = Scheduler(backend, prepare)
    thread, raised = run_in_thread(scheduler, [job])
    backend.wait_started()
    check_deadlines(scheduler, clock, 100)  # waited for its host twice its time limit
    assert backend.kills == []
    backend.runs(0)
    check_deadlines(scheduler, clock, 40)  # then ran for less than its limit
    backend.finish(0, 0)
    thread.join(10)
    assert not thread.is_alive() and raised == []
    assert job.results["state"] == "succeeded"


def test_a_job_that_runs_too_long_after_its_wait_is_timed_out(clock, parallel):
    backend = Held(clock, starts_later=True)
    job = ComputeJob("h", "node", timeout=50)
    scheduler = Scheduler(backend, prepare)
    thread, raised = run_in_thread(scheduler, [job])
    backend.wait_started()
    check_deadlines(scheduler, clock, 100)
    backend.runs(0)
    check_deadlines(scheduler, clock, 60)
    thread.join(10)
    assert not thread.is_alive() and raised == []
    assert backend.kills == [0]
    assert job.results["state"] == "timed_out"
    assert job.results["reason"] == "killed after exceeding its time limit"


def test_the_time_limit_counts_from_when_start_returned(clock, parallel):
    backend = Held(clock, slow_start=100)  # a start that takes twice the limit (a connect)
    job = ComputeJob("h", "node", timeout=50)
    scheduler = Scheduler(backend, prepare)
    thread, raised = run_in_thread(scheduler, [job])
    backend.wait_started()
    check_deadlines(scheduler, clock, 10)
    backend.finish(0, 0)
    thread.join(10)
    assert not thread.is_alive() and raised == []
    assert backend.kills == []
    assert job.results["state"] == "succeeded"


def test_a_retried_job_keeps_no_deadline_of_its_first_attempt(clock, parallel):
    backend = Held(clock)
    job = ComputeJob("h", "node", timeout=50, retries=1)
    scheduler = Scheduler(backend, prepare, retry=RetryPolicy(retry_exit_codes=frozenset({3})))
    thread, raised = run_in_thread(scheduler, [job])
    backend.wait_started()
    check_deadlines(scheduler, clock, 40)
    backend.finish(0, 3)  # the first attempt fails 40 s in; the second starts
    backend.wait_started(2)
    check_deadlines(scheduler, clock, 20)  # the first attempt's deadline has passed
    assert backend.kills == []
    backend.finish(0, 0)
    thread.join(10)
    assert not thread.is_alive() and raised == []
    assert job.results["state"] == "succeeded" and job.results["attempts"] == 2


def test_a_timed_out_job_whose_kill_is_never_confirmed_is_given_up(clock, parallel):
    backend = Held(clock, deaf=True)
    job = ComputeJob("h", "node", timeout=50)
    scheduler = Scheduler(backend, prepare)
    thread, raised = run_in_thread(scheduler, [job])
    backend.wait_started()
    check_deadlines(scheduler, clock, 60)
    assert backend.kills == [0]
    check_deadlines(scheduler, clock, KILL_REPORT_TIMEOUT + 1)
    thread.join(10)
    assert not thread.is_alive() and raised == []
    assert job.results["state"] == "timed_out"


def test_a_run_kill_that_the_backend_never_confirms_is_given_up(clock, parallel):
    backend = Held(clock, deaf=True)
    jobs = [ComputeJob("h", "node"), ComputeJob("h", "node", timeout=50)]
    scheduler = Scheduler(backend, prepare)
    thread, raised = run_in_thread(scheduler, jobs)
    backend.wait_started(2)
    scheduler.kill("SIGTERM")
    with backend.started:
        assert backend.started.wait_for(lambda: len(backend.kills) == 2, timeout=10)
    check_deadlines(scheduler, clock, KILL_REPORT_TIMEOUT + 1)
    thread.join(10)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], PipelineQuit)
    assert [job.results["state"] for job in jobs] == ["killed", "killed"]


def test_an_agents_started_frame_tells_when_the_job_runs(clock):
    from lofarexec.run.attempt import AttemptReport
    from lofarexec.transport.agent import _AgentJobHandle
    from lofarexec.transport.agent_end import AgentJob
    from lofarexec.transport.agent_frames import take_frame

    ended: list[tuple[object, object]] = []
    report = AttemptReport(lambda index, outcome: ended.append((index, outcome)), 7)
    job = AgentJob(1, "h", report)
    assert _AgentJobHandle.starts_later  # the scheduler waits for the frame
    assert report.running_since is None
    clock.offset += 100
    assert take_frame(job, b"P", b"4242") is None
    assert job.pid == 4242
    assert report.running_since is not None and report.running_since >= time.monotonic() + 99
    assert ended == []

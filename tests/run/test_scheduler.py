"""The scheduler with the in-process mock backend: limits, order, verdicts, timeouts, kills."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.errors import JobFailed, JobListError, JobTimeout, PipelineQuit
from lofarexec.job import ComputeJob, JobResult, JobState
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.testing.mock import MockBackend


@pytest.fixture(autouse=True, params=[False, True], ids=["starts-in-role", "parallel-starts"])
def start_mode(request, monkeypatch):
    """Every test twice: backends started while processing, and started outside that role."""
    monkeypatch.setattr(MockBackend, "parallel_start", request.param)
    return request.param


def prepare(job: ComputeJob) -> LaunchRequest:
    assert job.id is not None and job.host is not None
    return LaunchRequest(job.id, job.host, ("node",), {}, "token")


class Recorder:
    """Observer that tracks how many jobs run per host and in total, at every start."""

    def __init__(self) -> None:
        self.running: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.total_peak = 0
        self.order: list[int] = []

    def job_started(self, job: ComputeJob) -> None:
        self.running[job.host] += 1
        self.peak[job.host] = max(self.peak[job.host], self.running[job.host])
        self.total_peak = max(self.total_peak, sum(self.running.values()))
        self.order.append(job.id)

    def job_finished(self, job: ComputeJob) -> None:
        if job.results["state"] != "not_started":
            self.running[job.host] -= 1


class Outcomes:
    """Behaviour: the exit status is the job's first argument."""

    def __call__(self, request: LaunchRequest) -> Outcome:
        return Outcome(int(request.argv[-1]))


def jobs_for(hosts: list[str], per_host: int) -> list[ComputeJob]:
    return [ComputeJob(host, "node") for _ in range(per_host) for host in hosts]


def test_per_host_limit_is_reached_and_never_exceeded():
    jobs = jobs_for(["a", "b", "c"], 20)
    held = MockBackend()
    held.hold = True
    recorder = Recorder()
    scheduler = Scheduler(held, prepare, limits=Limits(per_host=3), observer=recorder)
    finisher = _finish_in_background(held, len(jobs))
    scheduler.run(jobs)
    finisher.join()
    assert dict(recorder.peak) == {"a": 3, "b": 3, "c": 3}
    assert all(job.state is JobState.SUCCEEDED for job in jobs)


def _finish_in_background(backend: MockBackend, count: int, outcome: int = 0) -> threading.Thread:
    """Finish held jobs one by one, oldest first, as they are started."""

    def finish_all() -> None:
        finished = 0
        while finished < count:
            with backend.started:
                backend.started.wait_for(lambda: backend._held, timeout=10)
                ready = sorted(backend._held)
            for job_id in ready:
                if backend.finish(job_id, outcome):
                    finished += 1

    thread = threading.Thread(target=finish_all)
    thread.start()
    return thread


def test_per_host_overrides_and_global_limit():
    backend = MockBackend()
    backend.hold = True
    recorder = Recorder()
    jobs = jobs_for(["a", "b", "c", "d"], 10)
    limits = Limits(per_host=4, overrides={"b": 1}, total=6)
    finisher = _finish_in_background(backend, len(jobs))
    Scheduler(backend, prepare, limits=limits, observer=recorder).run(jobs)
    finisher.join()
    assert recorder.peak["b"] == 1
    assert max(recorder.peak.values()) == 4
    assert recorder.total_peak == 6


def test_fifo_order_per_host():
    backend = MockBackend()
    backend.hold = True
    recorder = Recorder()
    jobs = jobs_for(["a", "b"], 15)
    finisher = _finish_in_background(backend, len(jobs))
    Scheduler(backend, prepare, limits=Limits(per_host=2), observer=recorder).run(jobs)
    finisher.join()
    for host in ("a", "b"):
        started = [i for i in recorder.order if jobs[i].host == host]
        assert started == sorted(started)
        assert len(started) == 15


def test_unlimited_by_default_starts_everything_at_once():
    backend = MockBackend()
    backend.hold = True
    jobs = jobs_for(["a"], 50)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (Scheduler(backend, prepare).run(jobs), done.set()))
    thread.start()
    with backend.started:
        assert backend.started.wait_for(lambda: len(backend._held) == 50, timeout=10)
    for job_id in range(50):
        backend.finish(job_id)
    thread.join(10)
    assert done.is_set()


def test_verdicts_error_event_and_results():
    backend = MockBackend()
    backend.behaviour = lambda request: {
        0: Outcome(0), 1: Outcome(3), 2: Outcome(-9),
        3: Outcome(None, transport_error="ssh: connect to host x: Connection refused"),
        4: Outcome(255),
    }[request.job_id]
    error = threading.Event()
    jobs = [ComputeJob("h", "node") for _ in range(5)]
    Scheduler(backend, prepare, error=error).run(jobs)
    states = [job.results["state"] for job in jobs]
    assert states == ["succeeded", "failed", "failed", "transport_error", "failed"]
    assert [job.results["returncode"] for job in jobs] == [0, 3, -9, None, 255]
    assert "signal 9" in jobs[2].results["reason"]
    assert "Connection refused" in jobs[3].results["reason"]
    assert error.is_set()
    for job in jobs:
        assert job.results["host"] == "h" and job.results["attempts"] == 1
        assert job.results["end_time"] >= job.results["start_time"]
        assert job.results["job_duration"] >= 0
        assert job.results["backend"] == "mock"
        assert isinstance(job.results, JobResult)
    assert jobs[0].raise_for_state() is jobs[0]
    for job in jobs[1:]:
        with pytest.raises(JobFailed) as caught:
            job.raise_for_state()
        assert (caught.value.job_id, caught.value.host) == (job.id, "h")
        assert caught.value.returncode == job.results["returncode"]
        assert caught.value.reason == job.results["reason"]


def test_error_event_stays_clear_when_all_succeed():
    error = threading.Event()
    Scheduler(MockBackend(), prepare, error=error).run(jobs_for(["a", "b"], 5))
    assert not error.is_set()


def test_timeout_kills_the_job_and_marks_it():
    backend = MockBackend()
    backend.hold = True
    job = ComputeJob("h", "node", timeout=0.05)
    Scheduler(backend, prepare).run([job])  # the mock's kill reports -15 at once
    assert job.results["state"] == "timed_out"
    assert job.results["returncode"] == -15
    with pytest.raises(JobTimeout, match="exceeding its time limit"):
        job.raise_for_state()


def test_kill_switch_stops_new_starts_and_kills_running():
    backend = MockBackend()
    backend.hold = True
    jobs = jobs_for(["a", "b"], 5)
    scheduler = Scheduler(backend, prepare, limits=Limits(per_host=2))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            scheduler.run(jobs)
        except PipelineQuit as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    with backend.started:
        assert backend.started.wait_for(lambda: len(backend._held) == 4, timeout=10)
    backend.finish(0)
    with backend.started:  # job 0's slot went to the next "a" job
        assert backend.started.wait_for(lambda: len(backend.requests) == 5, timeout=10)
    scheduler.kill("SIGTERM")
    thread.join(10)
    assert outcome and "SIGTERM" in str(outcome[0])
    states = [job.results["state"] for job in jobs]
    assert states.count("succeeded") == 1
    assert states.count("killed") == 4
    assert states.count("not_started") == 5
    assert backend.running() == []


def test_a_backend_that_raises_gives_a_transport_error_not_a_crash():
    class Broken(MockBackend):
        def start(self, request, report):
            if request.job_id == 1:
                raise RuntimeError("launcher exploded")
            return super().start(request, report)

    jobs = jobs_for(["a"], 3)
    Scheduler(Broken(), prepare).run(jobs)
    assert [job.results["state"] for job in jobs] == ["succeeded", "transport_error", "succeeded"]
    assert "launcher exploded" in jobs[1].results["reason"]


def test_limits_must_be_positive():
    with pytest.raises(JobListError, match="positive"):
        Limits(per_host=0)


def test_a_kill_while_a_start_is_under_way_reaches_the_job():
    entered, release = threading.Event(), threading.Event()
    killed: list[int] = []

    class SlowStart(MockBackend):
        hold = True
        parallel_start = True  # only such starts happen outside the processing role

        def start(self, request, report):
            entered.set()
            release.wait(10)  # the kill arrives while we are still starting
            handle = super().start(request, report)
            original = handle.kill
            handle.kill = lambda: (killed.append(request.job_id), original())
            return handle

    scheduler = Scheduler(SlowStart(), prepare)
    outcome: list[BaseException] = []

    def run():
        try:
            scheduler.run([ComputeJob("h", "node")])
        except PipelineQuit as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    # Processed at once by this thread (the starting one has given up the processing role),
    # so the kill is decided while the job's start is still under way.
    scheduler.deliver("kill", "SIGTERM")
    release.set()
    thread.join(10)
    assert killed == [0] and outcome

"""Host pause, probe and quarantine with the in-process mock backend."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.job import ComputeJob, JobState
from lofarexec.run.hosthealth import HostHealth, connect_timed_out
from lofarexec.run.retry import RetryPolicy
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.testing.mock import MockBackend


@pytest.fixture(autouse=True, params=[False, True], ids=["starts-in-role", "parallel-starts"])
def start_mode(request, monkeypatch):
    """Every test twice: backends started while processing, and started outside that role."""
    monkeypatch.setattr(MockBackend, "parallel_start", request.param)
    return request.param

FAST = RetryPolicy(retries=2, first_delay=0.001, jitter=lambda: 1.0)
REFUSED = Outcome(None, transport_error="could not connect: connection refused")


def prepare(job: ComputeJob) -> LaunchRequest:
    assert job.id is not None and job.host is not None
    return LaunchRequest(job.id, job.host, ("node",), {}, "token")


class Outage:
    """Behaviour: the first ``down`` starts on each host in ``hosts`` fail (forever: None)."""

    def __init__(self, down: dict[str, int | None]) -> None:
        self.down = down
        self.starts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: LaunchRequest) -> Outcome:
        with self.lock:
            self.starts[request.host] += 1
            count = self.starts[request.host]
        failing = self.down.get(request.host, 0)
        return REFUSED if failing is None or count <= failing else Outcome(0)


def run(jobs, behaviour, **options):
    backend = MockBackend()
    backend.behaviour = behaviour
    scheduler = Scheduler(backend, prepare, retry=options.pop("retry", FAST), **options)
    scheduler.run(jobs)
    return scheduler


def test_a_blip_pauses_the_host_instead_of_draining_its_queue():
    jobs = [ComputeJob("a", "node") for _ in range(20)]
    outage = Outage({"a": 2})
    run(jobs, outage, limits=Limits(per_host=1))
    assert all(job.state is JobState.SUCCEEDED for job in jobs)
    # one failure, one failed probe, then the host answers: 2 starts lost, not the queue
    assert outage.starts["a"] == 22
    assert jobs[0].results["attempts"] == 3
    assert all(job.results["attempts"] == 1 for job in jobs[1:])


def test_without_retries_only_the_failed_attempts_are_transport_errors():
    jobs = [ComputeJob("a", "node") for _ in range(20)]
    run(jobs, Outage({"a": 1}), retry=RetryPolicy(first_delay=0.001), limits=Limits(per_host=1))
    states = Counter(job.state for job in jobs)
    assert states == {JobState.TRANSPORT_ERROR: 1, JobState.SUCCEEDED: 19}


def test_a_dead_host_is_quarantined_after_three_failures(caplog):
    jobs = [ComputeJob(host, "node") for host in ("a", "b") for _ in range(10)]
    outage = Outage({"b": None})
    with caplog.at_level(logging.WARNING, "lofarexec.run.scheduler"):
        scheduler = run(jobs, outage, limits=Limits(per_host=2))
    assert outage.starts["b"] == 2 + 2  # the first group of 2 together, then 2 probes
    on_b = [job for job in jobs if job.host == "b"]
    assert all(job.state is JobState.TRANSPORT_ERROR for job in on_b)
    expected = "host b quarantined after 3 transport failures: could not connect: "
    assert all(job.results["reason"].startswith(expected) for job in on_b)
    assert all(job.state is JobState.SUCCEEDED for job in jobs if job.host == "a")
    quarantined = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(quarantined) == 1 and "host b" in quarantined[0].getMessage()
    assert scheduler.error.is_set()


def test_host_less_jobs_move_to_healthy_hosts():
    jobs = [ComputeJob(None, "node") for _ in range(12)]
    outage = Outage({"b": None})
    run(jobs, outage, pool=["a", "b"], limits=Limits(per_host=2))
    assert all(job.state is JobState.SUCCEEDED for job in jobs)
    assert all(job.results["host"] == "a" for job in jobs)
    assert outage.starts["b"] <= 3 + 1  # quarantined, never used again


def test_host_down_for_too_long_is_quarantined_at_its_next_failure():
    health = HostHealth(lambda failures: 1.0, host_failures=100, down_after=30.0)
    assert health.failed("a", 0, "refused", now=0.0) == 1.0
    health.probe_due("a")
    assert health.accepts("a")
    health.started("a", 1)
    assert not health.accepts("a")
    assert health.failed("a", 1, "refused", now=31.0) is None
    reason = "host a quarantined after 2 transport failures in 31 s: refused"
    assert health.quarantined["a"] == reason


def test_only_the_probe_resumes_a_paused_host():
    health = HostHealth(lambda failures: 1.0)
    health.failed("a", 0, "dropped", now=0.0)
    assert not health.answered("a", 5)  # started before the pause
    assert not health.accepts("a")
    health.probe_due("a")
    health.started("a", 6)
    assert health.answered("a", 6) and health.accepts("a")


SILENT = Outcome(None, transport_error="b: the connection failed: Connection timed out during "
                                       "banner exchange | Connection to b port 22 timed out")


def test_a_connect_timeout_quarantines_at_once_after_one_start(caplog):
    """A host that accepts and never answers: the first group of starts (one connection for
    an agent) is all it costs; no probe pays the connect timeout again."""
    jobs = [ComputeJob(host, "node") for host in ("a", "b") for _ in range(10)]
    starts: Counter[str] = Counter()

    def behaviour(request: LaunchRequest) -> Outcome:
        starts[request.host] += 1
        return SILENT if request.host == "b" else Outcome(0)

    with caplog.at_level(logging.WARNING, "lofarexec.run.scheduler"):
        scheduler = run(jobs, behaviour, limits=Limits(per_host=2), host_failures=10)
    assert starts["b"] == 2  # the first group, started together; not a probe more
    on_b = [job for job in jobs if job.host == "b"]
    assert all(job.state is JobState.TRANSPORT_ERROR for job in on_b)
    assert all(job.results["reason"].startswith(
        "host b quarantined after a connect timeout (no answer to a connection attempt): b: "
        "the connection failed: Connection timed out during banner exchange")
        for job in on_b), on_b[0].results["reason"]
    assert all(job.state is JobState.SUCCEEDED for job in jobs if job.host == "a")
    assert len([r for r in caplog.records if "quarantined" in r.getMessage()]) == 1
    assert scheduler.error.is_set()


def test_a_connect_timeout_of_a_probe_ends_a_pause_at_once():
    health = HostHealth(lambda failures: 1.0, host_failures=100)
    assert health.failed("a", 0, "ssh: connect to host a port 22: Connection refused",
                         now=0.0) == 1.0
    health.probe_due("a")
    health.started("a", 1)
    assert health.failed("a", 1, "ssh: connect to host a port 22: Connection timed out",
                         now=2.0) is None
    assert health.quarantined["a"].startswith("host a quarantined after a connect timeout")
    assert not health.accepts("a") and "a" not in health.down


@pytest.mark.parametrize(("error", "timed_out"), [
    ("n: the connection failed: Connection timed out during banner exchange", True),
    ("ssh: connect to host 10.200.0.3 port 22: Connection timed out", True),
    ("n: cannot connect to 10.0.0.7:22: timed out", True),  # paramiko
    ("ssh: connect to host n port 22: Connection refused", False),
    ("ssh: connect to host n port 22: No route to host", False),
    ("Timeout, server n not responding.", False),  # a link lost after it worked
    ("Read from remote host n: Connection timed out", False),
    ("n: the host's agent or its connection ended", False),
])
def test_which_errors_are_connect_timeouts(error, timed_out):
    assert connect_timed_out(error) is timed_out

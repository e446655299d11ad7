"""AgentPool at many hosts (issue 17): one loop thread for all hosts, hosts' programs started
off the caller's thread, a program that cannot start failing its host alone, hosts beyond the
descriptor budget waiting for a slot, and every agent told to close before any is waited for.
The agents here run straight from this machine's Python (``/bin/sh -c <agent command>``)."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.transport.agent import AgentClient
from lofarexec.transport.agent_loop import CHORE_WORKERS
from lofarexec.transport.agent_pool import AGENT_DESCRIPTORS, AgentPool
from lofarexec.transport.fdbudget import DescriptorBudget
from tests.helpers import Reports

HOSTS = 12
#: Tells the test it runs (on the port given as its argument), then sleeps.
SLEEPER = ("import socket, sys, time; socket.create_connection(('127.0.0.1', int(sys.argv[1])))"
           ".close(); time.sleep(300)")


def launcher(host: str, command: str) -> list[str]:
    """The local program for ``host``: a shell running the agent here; none for 'bad'."""
    return ["/no/such/launcher" if host == "bad" else "/bin/sh", "-c", command]


def make_pool(budget: DescriptorBudget) -> AgentPool:
    return AgentPool(launcher, program="sh", python=sys.executable, kill_grace=0.3,
                     alive_interval=0, orphan_timeout=5.0, budget=budget)


def request(job_id: int, host: str, *argv: str) -> LaunchRequest:
    return LaunchRequest(job_id=job_id, host=host, argv=argv or ("/bin/true",), environment={},
                         token="t")


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def spawn_threads(monkeypatch) -> list[threading.Thread]:
    """The threads in which the hosts' programs were started."""
    seen: list[threading.Thread] = []
    spawn = AgentClient._spawn

    def recorded(self: AgentClient) -> None:
        seen.append(threading.current_thread())
        spawn(self)

    monkeypatch.setattr(AgentClient, "_spawn", recorded)
    return seen


def test_one_loop_thread_for_every_host_and_programs_started_off_the_callers_thread(
        no_threads_left, spawn_threads) -> None:
    before = threading.active_count()
    pool, reports = make_pool(DescriptorBudget(None)), Reports()
    try:
        for number in range(HOSTS * 3):
            pool.start(request(number, f"h{number % HOSTS}"), reports(number))
        assert all(reports.wait(number) == Outcome(0) for number in range(HOSTS * 3))
        during = threading.active_count()
    finally:
        pool.close()
    assert reports.each_once()
    assert during - before <= 1 + CHORE_WORKERS  # the loop and its workers, not one per host
    assert len(spawn_threads) == HOSTS
    assert threading.current_thread() not in spawn_threads


def test_a_host_whose_program_cannot_start_fails_alone(no_threads_left) -> None:
    pool, reports = make_pool(DescriptorBudget(None)), Reports()
    try:
        for number, host in enumerate(["h1", "bad", "h2", "bad"]):
            pool.start(request(number, host), reports(number))
        assert reports.wait(0) == Outcome(0) and reports.wait(2) == Outcome(0)
        for number in (1, 3):
            assert reports.wait(number).transport_error.startswith(
                "bad: cannot start 'sh': ")
    finally:
        pool.close()


def test_hosts_beyond_the_budget_wait_for_a_slot_and_every_job_runs(
        no_threads_left, spawn_threads) -> None:
    budget = DescriptorBudget(2 * AGENT_DESCRIPTORS)  # two hosts' agents at a time
    pool, reports = make_pool(budget), Reports()
    most = [0]

    def watched(number: int):
        deliver = reports(number)

        def report(outcome: Outcome) -> None:
            most[0] = max(most[0], budget.used)
            deliver(outcome)
        return report

    try:
        for number in range(HOSTS * 2):
            pool.start(request(number, f"h{number % HOSTS}", "/bin/sh", "-c", "exit 3"),
                       watched(number))
        assert all(reports.wait(number) == Outcome(3) for number in range(HOSTS * 2))
    finally:
        pool.close()
    assert most[0] <= 2 * AGENT_DESCRIPTORS
    assert len(spawn_threads) == HOSTS  # each host's agent once: its jobs waited with it
    assert budget.used == 0 and budget.waiting == 0


def test_every_agent_is_told_to_close_before_any_is_waited_for(no_threads_left,
                                                              monkeypatch) -> None:
    pool, reports = make_pool(DescriptorBudget(None)), Reports()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        for number in range(HOSTS):
            pool.start(request(number, f"h{number}", sys.executable, "-c", SLEEPER,
                               str(listener.getsockname()[1])), reports(number))
        for _ in range(HOSTS):  # every job runs
            listener.accept()[0].close()
    events: list[str] = []
    shutdown, wait_finished = AgentClient.shutdown, AgentClient.wait_finished

    def recorded_shutdown(self: AgentClient) -> None:
        events.append("stop")
        shutdown(self)

    def recorded_wait(self: AgentClient, timeout: float | None = None) -> bool:
        events.append("wait")
        return wait_finished(self, timeout)

    monkeypatch.setattr(AgentClient, "shutdown", recorded_shutdown)
    monkeypatch.setattr(AgentClient, "wait_finished", recorded_wait)
    pool.close()
    assert events == ["stop"] * HOSTS + ["wait"] * HOSTS
    assert all(reports.wait(number, timeout=0).returncode == -15 for number in range(HOSTS))


def test_a_job_started_after_close_is_told_so_and_starts_nothing(no_threads_left,
                                                                 spawn_threads) -> None:
    pool, reports = make_pool(DescriptorBudget(None)), Reports()
    pool.start(request(1, "h1"), reports(1))
    assert reports.wait(1) == Outcome(0)
    pool.close()
    pool.start(request(2, "h1"), reports(2))
    assert reports.wait(2, timeout=0).transport_error == "h1: the backend is closing"
    assert len(spawn_threads) == 1
    pool.close()  # safe twice

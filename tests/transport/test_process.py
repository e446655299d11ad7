"""The process launcher that every subprocess-based transport shares."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lofarexec.backend import Outcome
from lofarexec.transport.process import ProcessLauncher
from tests.helpers import wait_gone


@pytest.fixture
def launcher():
    started = ProcessLauncher(kill_grace=0.5)
    started.start()
    yield started
    started.close()


class Reports:
    """Collects reports; lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.condition = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        with self.condition:
            self.outcomes.append(outcome)
            self.condition.notify_all()

    def wait(self, count: int = 1, timeout: float = 30) -> list[Outcome]:
        with self.condition:
            assert self.condition.wait_for(lambda: len(self.outcomes) >= count, timeout), (
                f"{len(self.outcomes)} of {count} reports")
            return list(self.outcomes)


def test_many_concurrent_launches_each_report_once(launcher):
    # Descriptor numbers are reused while other children run: every report must still come,
    # once, at once (this found a real bug: a finished child closing a reused number).
    reports = Reports()
    for _ in range(500):
        launcher.launch(["/bin/true"], reports)
    outcomes = reports.wait(500)
    assert [outcome.returncode for outcome in outcomes] == [0] * 500


def test_children_started_from_the_other_launchers_thread_each_report_once(launcher):
    # As the local backend does: a report, in one watcher thread, starts the next child in the
    # other launcher, so one thread registers a child while the other already sees it end.
    other = ProcessLauncher()
    other.start()
    reports = Reports()
    launchers = (launcher, other)
    remaining = [400]

    def chain(outcome: Outcome, index: int = 0) -> None:
        reports(outcome)
        with reports.condition:
            remaining[0] -= 1
            if remaining[0] < 2:
                return
        launchers[index % 2].launch(["/bin/true"], lambda seen: chain(seen, index + 1))

    try:
        for first in range(2):
            launchers[first].launch(["/bin/true"], lambda seen, i=first: chain(seen, i + 1))
        outcomes = reports.wait(400)
    finally:
        other.close()
    assert [outcome.returncode for outcome in outcomes] == [0] * 400


def test_output_tails_and_status(launcher):
    reports = Reports()
    script = "head -c 5000000 /dev/zero | tr '\\0' o; echo; echo oops >&2; exit 7"
    launcher.launch(["sh", "-c", script], reports)
    outcome = reports.wait()[0]
    assert outcome.returncode == 7
    assert len(outcome.output) == 64 * 1024 and outcome.output.endswith("o\n")
    assert outcome.errors == "oops\n"


def test_missing_program_is_a_transport_error_reported_at_once(launcher):
    reports = Reports()
    handle = launcher.launch(["/no/such/program", "x"], reports)
    outcome = reports.wait()[0]
    assert outcome.returncode is None and "/no/such/program" in outcome.transport_error
    handle.kill()  # harmless


def test_stdin_data_and_closed_stdin(launcher):
    reports = Reports()
    launcher.launch(["cat"], reports, stdin_data=b"secret\n")
    assert reports.wait()[0].output == "secret\n"


def test_stdin_held_open_until_exit(launcher):
    reports = Reports()
    # `head -n1` exits after one line: the held-open stdin must not keep it alive
    launcher.launch(["head", "-n1"], reports, stdin_data=b"line\n", keep_stdin_open=True)
    assert reports.wait()[0].output == "line\n"


def test_kill_takes_the_whole_group_even_when_term_is_ignored(launcher, tmp_path):
    reports = Reports()
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    script = f"trap '' TERM; sleep 300 & echo $! ; echo ready > {ready}; wait"
    handle = launcher.launch(["sh", "-c", script], reports)
    with open(ready) as fifo:  # blocks until the script has its trap in place
        assert fifo.readline() == "ready\n"
    started = time.monotonic()
    handle.kill()
    outcome = reports.wait()[0]
    assert time.monotonic() - started < 5
    assert outcome.returncode == -9  # TERM ignored: KILL after the grace period
    assert wait_gone(int(outcome.output.split()[0]), 5)


def test_leftovers_in_the_group_die_with_the_job(launcher):
    reports = Reports()
    launcher.launch(["sh", "-c", "sleep 300 & echo $!"], reports)
    outcome = reports.wait()[0]
    assert outcome.returncode == 0
    assert wait_gone(int(outcome.output.split()[0]), 5)


def test_close_kills_what_still_runs_and_is_idempotent():
    launcher = ProcessLauncher(kill_grace=0.2)
    launcher.start()
    reports = Reports()
    handle = launcher.launch(["sleep", "300"], reports)
    launcher.close()
    launcher.close()
    assert reports.wait()[0].returncode == -15
    assert wait_gone(handle.pid, 5)


def test_a_refused_argument_leaks_no_descriptor(launcher):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError):
        launcher.launch(["/bin/echo", "nul\0byte"], Reports())
    assert len(os.listdir("/proc/self/fd")) == before

"""Retries, host pause and quarantine on real components: the ssh test bed and local processes.

Each test counts the journal: every job has exactly one final state.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run.journal import ENDED, read_journal
from lofarexec.run.runner import JobRunner
from lofarexec.testing.sshbed import UNREACHABLE_HOST
from tests.helpers import write_config

pytestmark = pytest.mark.slow


def run(tmp_path: Path, text: str, jobs, max_per_node=None):
    path = write_config(tmp_path, text)
    config = load_config(path, job_name="night", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="night", error=error).schedule(jobs, max_per_node=max_per_node)
    return error, config.job_directory


def ssh_text(bed, remote: str) -> str:
    return (f"[remote]\nmethod = ssh\n{remote}[ssh]\nconfig_file = {bed.ssh_config}\n"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")


def one_final_state_each(job_directory: Path, jobs) -> Counter[str]:
    ended = [line for line in read_journal(job_directory, every_line=True)
             if line.get("event") == ENDED]
    assert sorted(line["id"] for line in ended) == list(range(len(jobs)))
    entries = read_journal(job_directory)
    assert sorted(entry["id"] for entry in entries) == list(range(len(jobs)))
    return Counter(entry["state"] for entry in entries)


class Heard(logging.Handler):
    """Sets ``event`` when the scheduler logs a line holding ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.words in message:
            self.event.set()


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():  # written by a node on another "host": no event to await
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def blip(bed, tmp_path: Path, retries: int):
    """Job 0 on node3 runs until node3's sshd is killed under it; the host comes back once
    the scheduler has paused it. Returns the jobs, the error Event and the journal's states."""
    marker = tmp_path / "first-attempt"
    jobs = [ComputeJob("node3", f"/bin/sh -c 'mkdir {marker} 2>/dev/null && exec sleep 60; "
                                "exit 0'")]
    jobs += [ComputeJob(host, "/bin/true") for host in ("node3", "node1") for _ in range(6)]
    heard = Heard("host node3 paused")
    logger = logging.getLogger("lofarexec.run.scheduler")
    logger.addHandler(heard)
    outcome: dict[str, object] = {}

    def schedule() -> None:
        outcome["error"], outcome["directory"] = run(
            tmp_path, ssh_text(bed, f"retries = {retries}\nhost_failures = 6\n"), jobs,
            max_per_node=1)

    runner = threading.Thread(target=schedule)
    try:
        runner.start()
        wait_for(marker)
        bed.stop_host("node3")
        assert heard.event.wait(30), heard.messages
    finally:
        bed.start_host("node3")
        runner.join(60)
        logger.removeHandler(heard)
    assert not runner.is_alive()
    return jobs, outcome["error"], one_final_state_each(outcome["directory"], jobs)


def test_a_host_blip_with_retries_loses_no_job(ssh_testbed, tmp_path):
    jobs, error, states = blip(ssh_testbed, tmp_path, retries=3)
    assert states == {"succeeded": 13}
    assert jobs[0].results["attempts"] >= 2
    assert "attempt 1 transport_error" in jobs[0].results["reason"]
    assert not error.is_set()


def test_a_host_blip_without_retries_is_a_transport_error_not_a_drained_queue(
        ssh_testbed, tmp_path):
    jobs, error, states = blip(ssh_testbed, tmp_path, retries=0)
    assert jobs[0].results["state"] == "transport_error"
    # the queue waited for the host instead of failing fast: only the job the outage hit and,
    # had sshd been slow to come back, a probe or two are lost, not node3's 7 jobs
    assert 1 <= states["transport_error"] <= 3
    assert set(states) <= {"succeeded", "transport_error"}
    assert error.is_set()


def test_a_dead_host_is_quarantined_once(ssh_testbed, tmp_path, caplog):
    jobs = [ComputeJob(host, "/bin/true") for host in (UNREACHABLE_HOST, "node1")
            for _ in range(8)]
    with caplog.at_level(logging.WARNING, "lofarexec.run.scheduler"):
        error, directory = run(tmp_path, ssh_text(ssh_testbed, "host_failures = 2\n"), jobs,
                               max_per_node=2)
    states = one_final_state_each(directory, jobs)
    assert states == {"transport_error": 8, "succeeded": 8}
    expected = f"host {UNREACHABLE_HOST} quarantined after 2 transport failures: "
    lost = [job for job in jobs if job.host == UNREACHABLE_HOST]
    assert all(job.results["reason"].startswith(expected) for job in lost), lost[0].results
    assert sum(job.results["attempts"] for job in lost) == 3  # 2 together, then 1 probe
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "lofarexec.run.scheduler" and "quarantined" in r.getMessage()]
    assert len(warnings) == 1 and UNREACHABLE_HOST in warnings[0]
    assert error.is_set()


@pytest.mark.parametrize(("codes", "state"), [("75", "succeeded"), ("", "failed")])
def test_a_node_failing_once_is_retried_for_a_listed_status(tmp_path, codes, state):
    marker = tmp_path / "failed-once"
    jobs = [ComputeJob("localhost", f"/bin/sh -c 'mkdir {marker} 2>/dev/null && exit 75; "
                                    "exit 0'")]
    error, directory = run(tmp_path, f"[remote]\nmethod = local\nretry_exit_codes = {codes}\n",
                           jobs)
    assert jobs[0].results["state"] == state
    assert jobs[0].results["attempts"] == (2 if state == "succeeded" else 1)
    assert one_final_state_each(directory, jobs) == {state: 1}
    assert error.is_set() is (state == "failed")


@pytest.mark.parametrize(("method", "words"), [
    ("ssh", "Connection timed out during banner exchange"),
    ("paramiko", ": timed out"),  # "cannot connect to 127.0.0.1:PORT: timed out"
])
def test_a_host_that_accepts_and_never_answers_costs_one_connect_timeout(
        ssh_testbed, tmp_path, method, words):
    """The listener takes TCP connections and says nothing (no ssh banner): the first attempt
    costs the connect timeout and quarantines the host. 10 jobs, 2 at once (one host agent):
    1 connection in all, not one per group nor ``host_failures`` (5 here)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host silent\n    HostName 127.0.0.1\n    Port {silent.getsockname()[1]}\n"
                      "    ConnectTimeout 1\n    BatchMode yes\n\n"
                      f"Include {ssh_testbed.ssh_config}\n")
    accepted = []
    stop = threading.Event()

    def take() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    taker = threading.Thread(target=take)
    taker.start()
    jobs = [ComputeJob("silent", "/bin/true") for _ in range(10)]
    try:
        text = (f"[remote]\nmethod = {method}\nhost_failures = 5\n"
                f"[{method}]\nconfig_file = {config}\nconnect_timeout = 1\n"
                "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
        error, directory = run(tmp_path, text, jobs, max_per_node=2)
    finally:
        stop.set()
        taker.join()
        for connection in accepted:
            connection.close()
        silent.close()
    assert one_final_state_each(directory, jobs) == {"transport_error": 10}
    assert len(accepted) == 1
    assert all(job.results["reason"].startswith("host silent quarantined after a connect "
                                                "timeout") for job in jobs), jobs[0].results
    assert words in jobs[0].results["reason"]
    assert 1 <= sum(job.results["attempts"] for job in jobs) <= 2  # the first group; no probe
    assert error.is_set()

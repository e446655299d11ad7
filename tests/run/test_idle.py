"""[remote] idle_timeout: a job that sends nothing for N seconds is named once, and killed when
the setting says ``kill`` (issue 14); on the local backend, with real processes."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob
from lofarexec.run.idle import IdleLimit, parse_idle_timeout
from lofarexec.run.journal import read_journal
from lofarexec.run.runner import JobRunner
from tests.helpers import wait_gone, write_config


class Heard(logging.Handler):
    """Keeps the recipe logger's warnings; ``event`` is set by the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


def runner(tmp_path: Path, setting: str) -> JobRunner:
    path = write_config(tmp_path, f"[remote]\nmethod = local\nidle_timeout = {setting}\n")
    config = load_config(path, job_name="idle", start_time="now")
    return JobRunner(config, recipe_name="idle", error=threading.Event())


def run_with(tmp_path: Path, setting: str, jobs: list[ComputeJob],
             while_running=None) -> tuple[JobRunner, Heard]:
    job_runner = runner(tmp_path, setting)
    heard = Heard()
    job_runner.logger.addHandler(heard)
    try:
        if while_running is None:
            job_runner.schedule(jobs)
        else:
            thread = threading.Thread(target=job_runner.schedule, args=(jobs,))
            thread.start()
            try:
                while_running(heard)
            finally:
                thread.join(60)
            assert not thread.is_alive()
    finally:
        job_runner.logger.removeHandler(heard)
    return job_runner, heard


def idle_warnings(heard: Heard) -> list[str]:
    return [message for message in heard.messages if "idle_timeout" in message]


def test_the_setting_is_seconds_then_an_optional_kill():
    assert parse_idle_timeout("600") == IdleLimit(600.0, kill=False)
    assert parse_idle_timeout(" 1.5 , KILL ") == IdleLimit(1.5, kill=True)
    for wrong in ("0", "soon", "5, stop"):
        with pytest.raises(ValueError):
            parse_idle_timeout(wrong)


def test_a_wrong_setting_is_one_line_naming_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match="idle_timeout.*'N' \\(warn\\) or 'N, kill'"):
        runner(tmp_path, "5, stop").schedule([ComputeJob("localhost", "/bin/true")])


@pytest.mark.slow
def test_a_silent_job_is_killed_as_timed_out_idle_for_n_s(tmp_path):
    pid_file = tmp_path / "pid"
    jobs = [ComputeJob("localhost", f"/bin/sh -c 'echo $$ > {pid_file}; exec sleep 120'"),
            ComputeJob("localhost", "/bin/true")]
    job_runner, heard = run_with(tmp_path, "0.5, kill", jobs)
    assert jobs[0].results["state"] == "timed_out"
    assert jobs[0].results["reason"] == "idle for 0.5 s"
    assert jobs[1].results["state"] == "succeeded"
    assert idle_warnings(heard) == [
        "job 0 on localhost: no log record or output for 0.5 s (idle_timeout); killing it"]
    assert wait_gone(int(pid_file.read_text()), 10)
    journal = read_journal(job_runner.config.job_directory)
    assert [(entry["id"], entry["state"], entry["reason"]) for entry in journal
            if entry["id"] == 0] == [(0, "timed_out", "idle for 0.5 s")]
    assert job_runner.error.is_set()


@pytest.mark.slow
def test_a_silent_job_is_named_once_and_left_running_without_kill(tmp_path):
    release = tmp_path / "go"
    jobs = [ComputeJob("localhost", f"/bin/sh -c 'while [ ! -e {release} ]; do sleep 0.05; "
                                    "done'")]

    def release_after_the_warning(heard: Heard) -> None:
        heard.event.wait(30)  # no warning: released anyway, and the assertion below fails
        release.touch()

    job_runner, heard = run_with(tmp_path, "0.3", jobs, release_after_the_warning)
    assert jobs[0].results["state"] == "succeeded"
    assert idle_warnings(heard) == [
        "job 0 on localhost: no log record or output for 0.3 s (idle_timeout)"]
    assert not job_runner.error.is_set()


NODE = """\
import sys, time
from lofarexec.node import LOFARnode

class chatty(LOFARnode):
    def run(self, *args):
        for step in range(14):
            self.logger.info("step %d", step)
            time.sleep(0.25)
        return 0

if __name__ == "__main__":
    sys.exit(chatty(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


@pytest.mark.slow
def test_a_job_that_logs_is_not_idle(tmp_path):
    """Log records every 0.25 s for 3.5 s, limit 2.5 s (room for the node's start-up on a
    loaded machine): the clock restarts at each record."""
    node = tmp_path / "chatty.py"
    node.write_text(NODE)
    jobs = [ComputeJob("localhost", f"{sys.executable} {node}")]
    _, heard = run_with(tmp_path, "2.5, kill", jobs)
    assert jobs[0].results["state"] == "succeeded", jobs[0].results
    assert idle_warnings(heard) == []

"""The end-of-run audit: a process a node left behind (double-forked into a session of its
own, so its job's process-group kill misses it) is named by host and pid, and killed; a run
that left nothing costs one audit command per host, over the link already open."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lofarexec.channel.protocol import ENV_RUN
from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob
from lofarexec.run.audit import (
    EndOfRunAudit,
    Leftover,
    audited_hosts,
    leftover_command,
    parse_leftovers,
)
from lofarexec.run.runner import JobRunner
from lofarexec.testing.procs import running, wait_gone
from tests.helpers import ESCAPING_NODE, escaped, write_config


def run(tmp_path: Path, text: str, jobs: list[ComputeJob]) -> threading.Event:
    config = load_config(write_config(tmp_path, text), job_name="audit", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="audit", error=error, progress=False).schedule(jobs)
    return error


def escaping_jobs(tmp_path: Path, hosts: list[str]) -> tuple[list[ComputeJob], list[Path]]:
    script = tmp_path / "escape.py"
    script.write_text(ESCAPING_NODE)
    pid_files = [tmp_path / f"sleeper-{n}" for n in range(len(hosts))]
    jobs = [ComputeJob(host, f"{sys.executable} {script} {pid_file}")
            for host, pid_file in zip(hosts, pid_files)]
    jobs += [ComputeJob(host, "/bin/true") for host in hosts]
    return jobs, pid_files


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if "end-of-run audit" in record.getMessage()]


def assert_named_by_host_and_killed(caplog: pytest.LogCaptureFixture, hosts: list[str],
                                    pid_files: list[Path]) -> None:
    """One audit line per host that had a sleeper (hosts sharing a process table each name
    their own), naming its pid; and every sleeper gone."""
    pids = [escaped(path)[0] for path in pid_files]
    lines = audit_lines(caplog)
    assert len(lines) == len(pids), lines
    for host, pid in zip(hosts, pids):
        [line] = [line for line in lines if line.startswith(f"end-of-run audit: {host}:")]
        assert f"pid {pid} (sleep 300)" in line
    assert wait_gone(pids, 10), "a sleeper survived the audit"


# -- the pieces --------------------------------------------------------------------------------

def test_the_command_lists_marked_live_processes_only(tmp_path):
    marker = "0123456789abcdef"
    marked = subprocess.Popen(["sleep", "60"], env={**os.environ, ENV_RUN: marker})
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, ENV_RUN: "fedcba9876543210"})
    try:
        listed = subprocess.run(["/bin/sh", "-c", leftover_command(marker)], check=True,
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    finally:
        for process in (marked, other):
            process.kill()
            process.wait()
    found = parse_leftovers("here", listed.stdout)
    assert [(left.host, left.pid, left.command) for left in found] == [
        ("here", marked.pid, "sleep 60")]  # no LOFAREXEC_HOST: the audited host's
    assert found[0].group == os.getpgid(os.getpid())  # Popen kept the test's group


def test_a_marker_that_is_not_hexadecimal_is_refused():
    with pytest.raises(ValueError, match="not a run marker"):
        leftover_command("x; rm -rf /")


def test_lines_that_are_not_the_audits_are_ignored():
    text = ("motd\nlofarexec-leftover 12 12 - sleep 300\nlofarexec-leftover x 1\n"
            "lofarexec-leftover 13 12 node7 sleep 1\n")
    assert parse_leftovers("h", text) == [Leftover("h", 12, 12, "sleep 300"),
                                          Leftover("node7", 13, 12, "sleep 1")]


def test_hosts_that_were_never_reached_are_not_audited():
    jobs = [ComputeJob(host, "true") for host in ("a", "b", "c", "a")]
    for job, state in zip(jobs, ("succeeded", "transport_error", "failed", "not_started")):
        job.results = {"host": job.host, "state": state}
    assert audited_hosts(jobs, local_only=False) == ["a", "c"]
    assert audited_hosts(jobs, local_only=True) == ["a"]  # one machine, checked once


def test_a_bad_audit_value_stops_the_run_before_any_job(tmp_path):
    with pytest.raises(ConfigError, match="audit"):
        run(tmp_path, "[remote]\nmethod = local\naudit = maybe\n",
            [ComputeJob("localhost", "/bin/true")])


# -- real processes ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_sleeper_escaping_its_jobs_kill_is_named_and_killed_locally(tmp_path, caplog):
    jobs, pid_files = escaping_jobs(tmp_path, ["localhost"])
    with caplog.at_level(logging.WARNING):
        error = run(tmp_path, "", jobs)
    pid = escaped(pid_files[0])[0]
    assert not error.is_set()  # every job succeeded: what it left is a warning
    [line] = audit_lines(caplog)
    assert "localhost: 1 process(es) of the run still alive" in line
    assert f"pid {pid} (sleep 300)" in line
    assert wait_gone(pid, 10), "the sleeper survived the audit"


@pytest.mark.slow
def test_a_clean_run_warns_nothing_and_audit_off_leaves_the_sleeper(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run(tmp_path, "", [ComputeJob(host, "/bin/true") for host in ("a", "b")])
    assert audit_lines(caplog) == []
    jobs, pid_files = escaping_jobs(tmp_path, ["localhost"])
    run(tmp_path, "[remote]\nmethod = local\naudit = off\n", jobs)
    pid = escaped(pid_files[0])[0]
    try:
        assert audit_lines(caplog) == [] and running(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 10)


@pytest.mark.slow
def test_sleepers_escaping_on_ssh_hosts_are_named_by_host_and_killed(ssh_testbed, tmp_path,
                                                                     caplog):
    hosts = ["node1", "node2", "node3"]
    jobs, pid_files = escaping_jobs(tmp_path, hosts[:2])
    jobs.append(ComputeJob("node3", "/bin/true"))  # audited, nothing left there
    text = (f"[remote]\nmethod = ssh\n[ssh]\nconfig_file = {ssh_testbed.ssh_config}\n"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
    with caplog.at_level(logging.WARNING):
        error = run(tmp_path, text, jobs)
    assert not error.is_set()
    assert_named_by_host_and_killed(caplog, hosts, pid_files)


def test_a_backend_without_audit_is_skipped_in_one_info_line(tmp_path, caplog):
    """srun does not declare ``audit = True`` (Slurm ends a job's processes itself): the audit
    starts nothing through it and says so once; with ``audit = off`` it says nothing."""
    from lofarexec_srun import SrunBackend

    jobs = [ComputeJob("n1", "/bin/true")]
    jobs[0].results = {"host": "n1", "state": "succeeded"}
    backend = SrunBackend()  # never opened: the audit must not start anything through it
    logger = logging.getLogger("audit-test")
    for text, lines in (("[remote]\nmethod = srun\n", 1),
                        ("[remote]\nmethod = srun\naudit = off\n", 0)):
        caplog.clear()
        config = load_config(write_config(tmp_path, text), job_name="audit", start_time="now")
        with caplog.at_level(logging.INFO, "audit-test"):
            assert EndOfRunAudit(config, "audit", logger).run(backend, jobs) == []
        said = [record for record in caplog.records if "end-of-run audit" in record.getMessage()]
        assert len(said) == lines
        if lines:
            assert said[0].levelno == logging.INFO
            assert said[0].getMessage().startswith(
                "end-of-run audit skipped: the srun backend does not take part")


def test_a_command_line_with_newlines_forges_no_line_of_the_shell_command():
    """The remote audit's listing: a newline in a job's argument is one line, so no process the
    run does not own can be named (and killed) through it."""
    marker = "0123456789abcdef"
    forged = "x\nlofarexec-leftover 1 1 - forged\r"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", forged],
                               env={**os.environ, ENV_RUN: marker})
    try:
        listed = subprocess.run(["/bin/sh", "-c", leftover_command(marker)], check=True,
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    finally:
        sleeper.kill()
        sleeper.wait()
    found = parse_leftovers("here", listed.stdout)
    assert [(left.pid, left.command) for left in found] == [
        (sleeper.pid, f"{sys.executable} -c import time; time.sleep(60) x "
                      "lofarexec-leftover 1 1 - forged")]


def test_a_carriage_return_in_a_listed_command_starts_no_line():
    text = "lofarexec-leftover 12 12 - sleep x\rlofarexec-leftover 1 1 - forged\n"
    assert [left.pid for left in parse_leftovers("h", text)] == [12]

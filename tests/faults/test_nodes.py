"""Node and control-node faults on hosts in namespaces: a node SIGKILLed, a node hanging, the
control node SIGTERMed or SIGKILLed mid-run and then ``--resume``.

Each test: every job has exactly one final state and reason in the journal, no process of the
run is left on any host, exit status right (the recipe exits 1 when its error Event is set).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.faults.runs import FaultRun, stop, wait_for
from tests.helpers import ESCAPING_NODE, escaped, wait_gone

pytestmark = pytest.mark.slow


def recording(folder: Path, name: str, then: str = "exec sleep 120") -> str:
    """A job that writes its pid to ``folder/name`` first (the hosts share this file system)."""
    return f"/bin/sh -c 'echo $$ > {folder / name}; {then}'"


def test_a_node_killed_outright_fails_alone(netns_bed, tmp_path):
    jobs = [("node1", recording(tmp_path, "pid")), ("node1", "/bin/true"),
            ("node2", "/bin/true")]
    run = FaultRun(netns_bed, tmp_path, jobs)
    process = run.start()
    try:
        wait_for((tmp_path / "pid").exists, "pid file", process)
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
        assert process.wait(60) == 1
    finally:
        stop(process)
    assert run.states() == {"succeeded": 2, "failed": 1}
    assert "signal 9" in run.results()[0]["reason"] or "SIGKILL" in run.results()[0]["reason"]
    run.assert_nothing_left()


def test_a_hanging_node_is_ended_by_job_timeout(netns_bed, tmp_path):
    jobs = [("node2", "/bin/sh -c 'exec sleep 120'"), ("node1", "/bin/true"),
            ("node2", "/bin/true")]
    run = FaultRun(netns_bed, tmp_path, jobs, remote="job_timeout = 1\n")
    assert run.run() == 1
    assert run.states() == {"succeeded": 2, "timed_out": 1}
    assert run.results()[0]["reason"]
    run.assert_nothing_left()


def held_run(netns_bed, tmp_path: Path) -> tuple[FaultRun, Path]:
    """Five jobs; job 4 on node2 waits for ``tmp_path/go``."""
    go = tmp_path / "go"
    jobs = [(host, "/bin/true") for host in ("node1", "node2", "node1", "node2")]
    jobs.append(("node2", recording(tmp_path, "pid",
                                    f"while [ ! -e {go} ]; do sleep 0.05; done")))
    return FaultRun(netns_bed, tmp_path, jobs), go


def interrupt_when_only_the_held_job_runs(run: FaultRun, signum: int) -> int:
    process = run.start()
    try:
        wait_for(lambda: len(run.ended_lines()) == 4 and (run.folder / "pid").exists(),
                 "four ended jobs", process)
        process.send_signal(signum)
        return process.wait(60)
    finally:
        stop(process)


def resume_finishes(run: FaultRun, go: Path, idle_sessions: bool = False) -> None:
    go.touch()
    assert run.run("--resume") == 0, run.stderr
    assert "4 of 5 jobs succeeded in an earlier run and are skipped; 1 run" in run.stderr
    assert run.states() == {"succeeded": 5}
    run.assert_nothing_left(idle_sessions)


def test_a_control_node_sigtermed_mid_run_then_resume(netns_bed, tmp_path):
    run, go = held_run(netns_bed, tmp_path)
    assert interrupt_when_only_the_held_job_runs(run, signal.SIGTERM) != 0
    states = run.states()  # the held job, too, has its one final state
    assert states["succeeded"] == 4 and sum(states.values()) == 5, states
    assert run.results()[4]["reason"]
    run.assert_nothing_left()
    resume_finishes(run, go)


def test_a_control_node_sigkilled_mid_run_then_resume(netns_bed, tmp_path):
    run, go = held_run(netns_bed, tmp_path)
    assert interrupt_when_only_the_held_job_runs(run, signal.SIGKILL) == -signal.SIGKILL
    assert len(run.ended_lines()) == 4  # nothing of ours ran to end the held job
    # the held job was ended on its host (its session's lifeline); the killed run's
    # ControlMasters keep an idle connection to each host for up to ControlPersist
    run.assert_nothing_left(idle_sessions=True)
    resume_finishes(run, go, idle_sessions=True)


def test_a_process_a_node_left_on_a_namespace_host_is_found_by_host_and_pid_and_killed(
        netns_bed, tmp_path):
    """The end-of-run audit, through each host's agent: a sleeper left on node1 and one on
    node2 (each in its host's network namespace) are named by host and pid and killed; the
    jobs keep their states (succeeded), so the run's exit status is 0."""
    script = tmp_path / "escape.py"
    script.write_text(ESCAPING_NODE)
    hosts = ("node1", "node2")
    jobs = [(host, f"{sys.executable} {script} {tmp_path / host}") for host in hosts]
    jobs += [(host, "/bin/true") for host in hosts]
    run = FaultRun(netns_bed, tmp_path, jobs)
    assert run.run() == 0, run.stderr
    assert run.states() == {"succeeded": 4}
    for host in hosts:
        pid, namespace = escaped(tmp_path / host)
        # it ran in its host's namespace, and the audit of that host named it
        assert namespace == f"net:[{os.stat(f'/run/netns/{netns_bed.namespace(host)}').st_ino}]"
        [line] = [line for line in run.stderr.splitlines()
                  if f"end-of-run audit: {host}: " in line]
        assert "1 process(es) of the run still alive" in line and f"pid {pid} (sleep 300)" in line
        assert wait_gone(pid, 10), f"{host}: the sleeper survived the audit"
    run.assert_nothing_left()

"""The local backend through the whole runner: real node processes, real log sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from lofarexec.job import ComputeJob
from lofarexec.run.journal import read_journal
from lofarexec.run.runner import JobRunner
from tests.helpers import kill_control_node_outright, wait_gone, write_config

TIMING_NODE = """
import fcntl
record = args[0]
with open(record, "a") as out:
    fcntl.flock(out, fcntl.LOCK_EX)
    out.write(f"start {args[1]} {time.time()}\\n")
time.sleep(float(args[2]))
with open(record, "a") as out:
    fcntl.flock(out, fcntl.LOCK_EX)
    out.write(f"end {args[1]} {time.time()}\\n")
return int(args[3])
"""


def run_jobs(config, jobs, max_per_node=None, recipe="testrecipe"):
    error = threading.Event()
    runner = JobRunner(config, recipe_name=recipe, error=error)
    return runner.schedule(jobs, max_per_node=max_per_node), error


def intervals(record: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for line in record.read_text().splitlines():
        kind, name, stamp = line.split()
        times.setdefault(name, []).append(float(stamp))
    return times


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_fifo_per_host_with_one_slot(make_config, node_script, tmp_path):
    config = make_config("[max_per_node]\nnode1 = 1\n")
    command = node_script(TIMING_NODE)
    record = tmp_path / "order.log"
    jobs = [ComputeJob("node1", command, [str(record), f"j{i}", "0", "0"]) for i in range(8)]
    run_jobs(config, jobs)
    lines = record.read_text().splitlines()
    starts = [line.split()[1] for line in lines if line.startswith("start")]
    assert starts == [f"j{i}" for i in range(8)]


def test_exit_codes_results_and_journal(make_config, node_script, tmp_path):
    config = make_config()
    command = node_script(TIMING_NODE)
    record = tmp_path / "codes.log"
    jobs = [ComputeJob("h", command, [str(record), f"j{code}", "0", str(code)])
            for code in (0, 1, 2, 255)]
    jobs.append(ComputeJob("h", "/no/such/program"))
    results, error = run_jobs(config, jobs)
    assert list(results) == [0, 1, 2, 3, 4]
    assert [job.results["returncode"] for job in jobs] == [0, 1, 2, 255, None]
    assert [job.results["state"] for job in jobs] == [
        "succeeded", "failed", "failed", "failed", "transport_error"]
    assert jobs[4].results["reason"] == "cannot start '/no/such/program': No such file or directory"
    assert error.is_set()
    journal = read_journal(config.job_directory)
    by_id = {entry["id"]: entry["state"] for entry in journal}  # lines come in finishing order
    assert [by_id[job.id] for job in jobs] == [job.results["state"] for job in jobs]
    assert all(entry["backend"] == "local" for entry in journal)
    json.dumps(journal)


def test_malformed_command_fails_before_any_job_starts(make_config, tmp_path):
    config = make_config()
    marker = tmp_path / "ran"
    jobs = [ComputeJob("h", f"touch {marker}"), ComputeJob("h", "python 'unclosed")]
    with pytest.raises(ValueError, match="job 1: cannot split command"):
        run_jobs(config, jobs)
    assert not marker.exists()


def test_a_failed_job_says_why_in_the_master_log(make_config, node_script, caplog):
    config = make_config()
    command = node_script("sys.stderr.write('disk full on /data\\n')\nreturn 3", name="failing")
    job = ComputeJob("node7", command)
    with caplog.at_level("ERROR"):
        run_jobs(config, [job], recipe="myrecipe")
    messages = [r.getMessage() for r in caplog.records if r.name == "myrecipe"]
    assert "job 0 on node7 failed: node script exited with status 3" in messages
    assert "job 0 stderr: disk full on /data" in messages


def test_a_stop_before_the_batch_starts_starts_nothing(make_config, tmp_path):
    from lofarexec.errors import PipelineQuit

    marker = tmp_path / "ran"
    error = threading.Event()
    runner = JobRunner(make_config(), recipe_name="t", error=error)
    runner.kill("SIGINT")  # as a signal handler does while plugins are still loading
    jobs = [ComputeJob("h", f"touch {marker}") for _ in range(3)]
    with pytest.raises(PipelineQuit, match="SIGINT"):
        runner.schedule(jobs)
    assert not marker.exists()
    assert [job.results["state"] for job in jobs] == ["not_started"] * 3


def test_host_overrides_ignore_case(make_config, node_script, tmp_path):
    config = make_config("[max_per_node]\nLCE001 = 1\n")
    command = node_script(TIMING_NODE)
    record = tmp_path / "case.log"
    jobs = [ComputeJob("LCE001", command, [str(record), f"j{i}", "0.2", "0"]) for i in range(3)]
    run_jobs(config, jobs)
    spans = [tuple(pair) for pair in intervals(record).values()]
    assert peak_overlap(spans) == 1


@pytest.mark.slow
def test_local_jobs_die_when_the_control_node_is_killed_outright(tmp_path):
    write_config(tmp_path)
    # no handler of ours runs: only the lifeline's pipe closing tells anyone
    pids = kill_control_node_outright(tmp_path, ["h1", "h2"], sys.executable)
    try:
        assert [pid for pid in pids if not wait_gone(pid, 10)] == []
    finally:
        for pid in pids:  # what the fix did not kill, the test does
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

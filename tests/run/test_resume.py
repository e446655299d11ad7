"""--resume: only the jobs that did not succeed before run again, matched on their identity;
one run of a job name at a time (issue 14)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lofarexec import ComputeJob
from lofarexec.config import load_config
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.run.journal import JournalWriter, read_journal
from lofarexec.run.resume import job_identities
from lofarexec.run.runlock import RunLock, RunLocked
from lofarexec.run.runner import JobRunner
from tests.helpers import wait_gone, write_config

# A node that counts its runs in <folder>/ran, fails while <folder>/fail-<arg> exists, and
# sends an output the master keeps.
NODE = """\
import os, sys
from lofarexec.node import LOFARnode

class counted(LOFARnode):
    def run(self, folder, name):
        with open(os.path.join(folder, "ran"), "a") as ran:
            ran.write(name + "\\n")
        if os.path.exists(os.path.join(folder, "fail-" + name)):
            return 3
        self.outputs["made"] = name.upper()
        return 0

if __name__ == "__main__":
    sys.exit(counted(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


@pytest.fixture
def bed(tmp_path: Path):
    node = tmp_path / "counted.py"
    node.write_text(NODE)
    config_path = write_config(tmp_path)

    def run(names: list[str], *, resume: bool, method: str = "local",
            dry_run: bool = False) -> list[ComputeJob]:
        config = load_config(config_path, job_name="resumed", start_time="2026-01-01T00:00:00")
        if method != "local":
            config.set("remote", "method", method)
        jobs = [ComputeJob("localhost", f"{sys.executable} {node}", [str(tmp_path), name])
                for name in names]
        runner = JobRunner(config, recipe_name="resumed", error=threading.Event(),
                           plugin_manager=build_plugin_manager([JournalWriter()]),
                           resume=resume, dry_run=dry_run)
        runner.schedule(jobs, max_per_node=2)
        return jobs

    return tmp_path, run


def ran(folder: Path) -> list[str]:
    path = folder / "ran"
    lines = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return sorted(lines)


def test_resume_runs_only_what_did_not_succeed_and_gives_back_the_outputs(bed, caplog):
    folder, run = bed
    names = ["a", "b", "c", "d"]
    (folder / "fail-b").touch()
    (folder / "fail-d").touch()
    first = run(names, resume=False)
    assert [job.results["state"] for job in first] == ["succeeded", "failed"] * 2
    assert ran(folder) == names
    (folder / "fail-b").unlink()
    caplog.set_level("INFO")
    second = run(names, resume=True)
    assert ran(folder) == ["b", "d"]  # d fails again; a and c are not run
    assert [job.results["state"] for job in second] == ["succeeded", "succeeded", "succeeded",
                                                      "failed"]
    assert [job.results.get("made") for job in second] == ["A", "B", "C", None]
    assert [job.id for job in second] == [0, 1, 2, 3]
    assert any("2 of 4 jobs succeeded in an earlier run and are skipped; 2 run" in r.getMessage()
               for r in caplog.records)
    # Without --resume everything runs again; with it, a changed job is a new identity.
    (folder / "fail-d").unlink()
    run(names, resume=True)
    assert ran(folder) == ["d"]
    run(["a", "b", "c", "e"], resume=True)
    assert ran(folder) == ["e"]
    run(names, resume=False)
    assert ran(folder) == names


def test_identity_is_host_command_and_arguments_and_repeats_are_told_apart():
    jobs = [ComputeJob("h", "node", ["x"]), ComputeJob("h", "node", ["x"]),
            ComputeJob("h", "node", ["y"]), ComputeJob("g", "node", ["x"]),
            ComputeJob(None, "node", ["x"]),
            ComputeJob("h", "node", [{"k": [1, None]}], store_arguments=True)]
    first = job_identities(jobs)
    assert len(set(first)) == len(first)
    assert first[1] == first[0] + "#1"
    assert job_identities(list(reversed(jobs[2:]))) == list(reversed(first[2:]))


def test_resume_after_a_backend_switch_matches_the_same_jobs(bed):
    folder, run = bed
    (folder / "fail-b").touch()
    run(["a", "b"], resume=False)
    (folder / "fail-b").unlink()
    ran(folder)
    resumed = run(["a", "b"], resume=True, method="mock")  # the mock backend runs nothing
    assert ran(folder) == []
    assert resumed[0].results["state"] == "succeeded"  # from the journal: not run again
    assert resumed[0].results["backend"] == "local"  # as it ran
    assert resumed[1].results["backend"] == "mock"


MASTER = """\
import sys
from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

class resumable(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        jobs = [ComputeJob("localhost", "{python} {node}", ["{folder}", str(n)])
                for n in range(8)]
        self._schedule_jobs(jobs, max_per_node=2)
        return 1 if self.error.is_set() else 0

if __name__ == "__main__":
    sys.exit(resumable().main())
"""
# Job 5 waits until released (its folder's "go" file), so the test can kill the master mid-run.
SLOW_NODE = NODE.replace(
    'def run(self, folder, name):\n',
    'def run(self, folder, name):\n'
    '        import time\n'
    '        if name == "5":\n'
    '            open(os.path.join(folder, "pid"), "w").write(str(os.getpid()))\n'
    '        while name == "5" and not os.path.exists(os.path.join(folder, "go")):\n'
    '            time.sleep(0.02)\n')


@pytest.mark.slow
def test_resume_after_the_control_node_was_killed_outright(tmp_path):
    node = tmp_path / "counted.py"
    node.write_text(SLOW_NODE)
    write_config(tmp_path)
    master = tmp_path / "resumable.py"
    master.write_text(MASTER.format(python=sys.executable, node=node, folder=tmp_path))
    command = [sys.executable, str(master), "-j", "night"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.DEVNULL)
    journal = tmp_path / "runtime" / "jobs" / "night" / "journal.jsonl"
    try:
        while True:  # every job but 5 has ended: the master waits for it
            ended = [json.loads(line) for line in journal.read_text().splitlines()
                     if '"ended"' in line] if journal.exists() else []
            if len(ended) == 7:
                break
            assert process.poll() is None, "the recipe ended before it was killed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert wait_gone(int((tmp_path / "pid").read_text()), 30)  # the lifeline kills it
    entries = read_journal(tmp_path / "runtime" / "jobs" / "night")
    assert sorted(e["state"] for e in entries) == ["running"] + ["succeeded"] * 7
    ran(tmp_path)
    (tmp_path / "go").touch()
    result = subprocess.run([*command, "--resume", "-v"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path) == ["5"]
    assert "7 of 8 jobs succeeded in an earlier run and are skipped; 1 run" in result.stderr


def test_one_run_of_a_job_name_at_a_time(tmp_path):
    with RunLock(tmp_path), RunLock(tmp_path):  # again in the same process: allowed
        holder = subprocess.run(
            [sys.executable, "-c", "import sys; from lofarexec.run.runlock import RunLock\n"
             "try:\n    RunLock(sys.argv[1]).__enter__()\n"
             "except Exception as exc:\n    print(exc)\n", str(tmp_path)],
            capture_output=True, text=True, timeout=60)
        assert "another run of this job is in progress (pid" in holder.stdout
        assert "use another job name (-j)" in holder.stdout
    with RunLock(tmp_path):  # released: free again
        pass


def test_a_second_recipe_with_the_same_job_name_is_refused_in_one_line(tmp_path, bed):
    write_config(tmp_path)
    master = tmp_path / "resumable.py"
    master.write_text(MASTER.format(python=sys.executable, node=tmp_path / "counted.py",
                                    folder=tmp_path))
    with RunLock(tmp_path / "runtime" / "jobs" / "night"):
        result = subprocess.run([sys.executable, str(master), "-j", "night"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another run of this job is in progress" in lines[0], lines
    assert not (tmp_path / "ran").exists()


def test_a_lock_held_by_a_process_killed_outright_is_free(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lofarexec.run.runlock import RunLock\n"
         "RunLock(sys.argv[1]).__enter__(); print('held', flush=True); time.sleep(300)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunLocked):
            RunLock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    with RunLock(tmp_path):
        pass


def test_a_dry_run_with_resume_shows_only_what_would_run_again(bed, capsys):
    """-n --resume: the plan leaves out the jobs that succeeded before and says how many; they
    keep their restored results; nothing runs and the journal is not touched."""
    folder, run = bed
    (folder / "fail-b").touch()
    run(["a", "b", "c"], resume=False)
    ran(folder)
    before = {path: path.read_bytes() for path in folder.rglob("*.jsonl")}
    capsys.readouterr()
    jobs = run(["a", "b", "c"], resume=True, dry_run=True)
    shown = capsys.readouterr().out
    header = shown.splitlines()[0]
    assert header.startswith("dry run: 1 job on 1 host")
    assert "2 of 3 jobs succeeded before and would be skipped (--resume)" in header
    assert "job 1 on localhost" in shown and "job 0 on" not in shown
    assert [job.results["state"] for job in jobs] == ["succeeded", "not_started", "succeeded"]
    assert [job.results.get("made") for job in jobs] == ["A", None, "C"]
    assert ran(folder) == []
    assert before and {path: path.read_bytes() for path in folder.rglob("*.jsonl")} == before

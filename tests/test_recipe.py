"""Recipes as programs: the seed's example end to end, the CLI, and stopping on signals."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO, wait_gone, write_config

SEED_RECIPE = REPO / "recipes" / "master" / "example_parallel.py"


def run_recipe(args, cwd=None, timeout=60):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_seed_example_end_to_end(tmp_path):
    result = run_recipe([SEED_RECIPE, "-j", "foo", "-d", "-r", tmp_path / "runtime"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    expected = [
        r"DEBUG   example_parallel: Logging to [\d.]+:\d+$",
        r"DEBUG   example_parallel: Dispatching command to localhost with local$",
        r"INFO    example_parallel: Waiting for compute threads\.\.\.$",
        r"INFO    node\.localhost\.example_parallel: Received example_argument as argument$",
        r"INFO    example_parallel: recipe example_parallel completed$",
    ]
    found = [next(i for i, line in enumerate(lines) if re.match(stamp + pattern, line))
             for pattern in expected]
    assert found == sorted(found), result.stderr
    assert result.stdout.strip() == "Results:"
    assert "Warning" not in result.stderr
    journal = tmp_path / "runtime" / "jobs" / "foo" / "journal.jsonl"
    assert '"state": "succeeded"' in journal.read_text()


def test_seed_node_script_runs_by_hand_without_a_master():
    node = REPO / "recipes" / "nodes" / "example_parallel.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LOFAREXEC_TOKEN", None)
    result = subprocess.run([sys.executable, str(node), "127.0.0.1", "1", "hello"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0
    assert "Received hello as argument" in result.stderr


def test_help_lists_the_seed_options():
    result = run_recipe([SEED_RECIPE, "-h"])
    assert result.returncode == 0
    for option in ("--job-name", "--config", "--debug", "--verbose", "--runtime-directory",
                   "--working-directory", "--dry-run", "--start-time"):
        assert option in result.stdout


def test_job_name_is_required():
    result = run_recipe([SEED_RECIPE])
    assert result.returncode == 2
    assert "--job-name" in result.stderr


def test_unknown_method_fails_before_any_job_with_the_installed_list(tmp_path):
    config = write_config(tmp_path, method="nosuch")
    result = run_recipe([SEED_RECIPE, "-j", "x", "-c", config])
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if "nosuch" in line]
    assert len(error_lines) == 1
    assert "installed: " in error_lines[0] and "local" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert "Dispatching" not in result.stderr


def test_missing_config_is_one_line_naming_the_places(tmp_path):
    result = run_recipe([SEED_RECIPE, "-j", "x", "-c", tmp_path / "absent.cfg"], cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.cfg" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_starts_nothing(tmp_path):
    result = run_recipe([SEED_RECIPE, "-j", "dry", "-n", "-v", "-r", tmp_path], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "dry run: would run" in result.stderr
    assert "Received" not in result.stderr


def test_positional_args_and_outputs(tmp_path):
    recipe = tmp_path / "master" / "echo_args.py"
    recipe.parent.mkdir()
    recipe.write_text(textwrap.dedent("""\
        import sys
        from lofarpipe.support.baserecipe import BaseRecipe

        class echo_args(BaseRecipe):
            def go(self):
                super().go()
                self.outputs["args"] = ",".join(self.inputs["args"])
                self.outputs["job"] = self.inputs["job_name"]
                return 0

        if __name__ == "__main__":
            sys.exit(echo_args().main())
        """))
    write_config(tmp_path)  # found in the recipe directory (parent of master/)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(recipe), "-j", "J", "a", "b c"], env=env,
                            capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Results:", "args = a,b c", "job = J"]


STUBBORN_RECIPE = """\
import sys
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.remotecommand import ComputeJob, RemoteCommandRecipeMixIn

class stubborn(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        jobs = [ComputeJob(f"node{i % 2}", "{python} {node}") for i in range(6)]
        self._schedule_jobs(jobs, max_per_node=2)
        return 1 if self.error.is_set() else 0

if __name__ == "__main__":
    sys.exit(stubborn().main())
"""

STUBBORN_NODE = """\
import os, signal, subprocess, sys, time
from lofarpipe.support.lofarnode import LOFARnode

class stubborn(LOFARnode):
    def run(self, *args):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # only KILL gets rid of it
        child = subprocess.Popen(["sleep", "300"])
        self.logger.warning("started pid=%d child=%d", os.getpid(), child.pid)
        time.sleep(300)
        return 0

if __name__ == "__main__":
    sys.exit(stubborn(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_kills_running_jobs_and_leaves_no_process(tmp_path, signum):
    """SIGHUP (a terminal that went away) stops the run exactly like SIGTERM and Ctrl-C."""
    recipe = tmp_path / "master" / "stubborn.py"
    recipe.parent.mkdir()
    node = tmp_path / "nodes" / "stubborn.py"
    node.parent.mkdir()
    node.write_text(STUBBORN_NODE)
    recipe.write_text(STUBBORN_RECIPE.replace("{python}", sys.executable)
                      .replace("{node}", str(node)))
    write_config(tmp_path, "[local]\nkill_grace = 0.5\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    master = subprocess.Popen([sys.executable, str(recipe), "-j", "stop", "-v"], env=env,
                              stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert master.stderr is not None
        for line in master.stderr:  # wait for the four running nodes to say they started
            match = re.search(r"started pid=(\d+) child=(\d+)", line)
            if match:
                pids += [int(match[1]), int(match[2])]
                if len(pids) == 8:
                    break
        assert len(pids) == 8
        master.send_signal(signum)
        remaining = master.stderr.read()
        assert master.wait(timeout=20) == 1
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        master.stdout.close()
        master.stderr.close()
    name = signal.Signals(signum).name
    assert "stopped" in remaining and f"received {name}: stopping the recipe" in remaining
    assert [pid for pid in pids if not wait_gone(pid, 5)] == []
    journal = (tmp_path / "runtime" / "jobs" / "stop" / "journal.jsonl").read_text()
    assert journal.count('"state": "killed"') == 4
    assert journal.count('"state": "not_started"') == 2
    lines = [json.loads(line) for line in journal.splitlines()]
    running = {line["id"] for line in lines if line["state"] == "killed"}
    assert {line["id"] for line in lines if line["event"] == "started"} == running


def test_log_format_from_the_config(tmp_path):
    config = write_config(tmp_path, "[logging]\nformat = <%(levelname)s> %(message)s\n")
    result = run_recipe([SEED_RECIPE, "-j", "fmt", "-v", "-c", config, "nodeF"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "<INFO> Received example_argument as argument" in result.stderr


@pytest.mark.slow
def test_a_full_disk_under_the_log_file_is_said_once_not_a_traceback_per_record(tmp_path,
                                                                                  capfd):
    import logging

    from lofarexec import recipe
    from tests.run.test_journal import fill, small_tmpfs

    with small_tmpfs(tmp_path / "disk") as disk:
        log_file = disk / "logs" / "pipeline.log"
        recipe._add_log_file(log_file, logging.Formatter("%(message)s"))
        root = logging.getLogger()
        handler = next(h for h in root.handlers if getattr(h, "baseFilename", "") == str(log_file))
        try:
            fill(disk, leave=0)
            for index in range(2000):
                logging.getLogger("full").debug("record %d %s", index, "x" * 100)
        finally:
            root.removeHandler(handler)
            with contextlib.suppress(OSError):
                handler.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err
    assert err.count("cannot write the log file") == 1
    assert "No space left on device" in err

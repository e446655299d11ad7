"""Out of file descriptors on the control node (issue 12 item 5): no dead thread, no hang, and
each affected job says why and what to do; for paramiko and, alike, for ssh."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

#: Lowers the hard open-files limit (the runner raises the soft one to it), then runs jobs that
#: hold a session for a second each on every host at once; prints each job's state and reason.
RECIPE = textwrap.dedent("""\
    import json, resource, sys, threading
    from pathlib import Path
    limit, directory, method, config_text, hosts, per_host, python = sys.argv[1:8]
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
    from lofarexec.job import ComputeJob
    from lofarexec.run.runner import JobRunner
    from lofarexec.testing.backend_promises import ContractSetup, contract_config
    hosts = hosts.split(",")
    config = contract_config(ContractSetup(method=method, hosts=hosts, directory=Path(directory),
                                           python=python, config=config_text))
    jobs = [ComputeJob(host, "/bin/sh -c 'sleep 1'") for host in hosts
            for _ in range(int(per_host))]
    JobRunner(config, recipe_name="fds", error=threading.Event()).schedule(
        jobs, max_per_node=int(per_host))
    print(json.dumps([[job.results.get("state"), job.results.get("reason")] for job in jobs]))
    """)

#: Open files the recipe may have: enough to start, too few for every job at once.
LIMIT = 22
#: Generous: a hang is what this would catch (each job sleeps 1 s).
NO_HANG = 120


@pytest.mark.slow
@pytest.mark.parametrize("method, launch", [("paramiko", "agent"), ("paramiko", "channel"),
                                            ("ssh", "agent")])
def test_out_of_descriptors_each_job_says_so_and_the_run_ends(ssh_testbed, tmp_path, method,
                                                              launch) -> None:
    script = tmp_path / "recipe.py"
    script.write_text(RECIPE)
    config = (f"[{method}]\nconfig_file = {ssh_testbed.ssh_config}\nlaunch = {launch}\n"
              "[logging]\nbind_address = 127.0.0.1\n")
    done = subprocess.run(
        [sys.executable, str(script), str(LIMIT), str(tmp_path), method, config,
         ",".join(ssh_testbed.host_names), "8", ssh_testbed.python],
        capture_output=True, text=True, timeout=NO_HANG, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == 32
    failed = [reason for state, reason in results if state != "succeeded"]
    assert failed, "the limit did not bite: lower LIMIT"
    for reason in failed:
        assert "file descriptors" in reason and "ulimit -n" in reason, reason
    assert "getpwuid" not in done.stderr
    assert "Exception in thread" not in done.stderr and "Traceback" not in done.stderr

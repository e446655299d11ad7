"""Out of file descriptors on the control node (issue 12 item 5): no dead thread, no hang, and
each affected job says why and what to do; for ssh. The paramiko backend holds one descriptor
per host and takes it from the process's descriptor budget (issue 17): hosts beyond it wait
for a slot, and every job succeeds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.backends.test_many_hosts import alias_config
from tests.helpers import REPO

#: Lowers the hard open-files limit (the runner raises the soft one to it), then runs jobs on
#: every host at once; prints each job's state and reason. The paramiko backend's debug lines
#: (a connection waiting for descriptors) go to stderr.
RECIPE = textwrap.dedent("""\
    import json, logging, resource, sys, threading
    from pathlib import Path
    limit, directory, method, config_text, hosts, per_host, python, command = sys.argv[1:9]
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
    from lofarexec.job import ComputeJob
    from lofarexec.run.runner import JobRunner
    from lofarexec.testing.backend_promises import ContractSetup, contract_config
    paramiko_log = logging.getLogger("lofarexec.paramiko")
    paramiko_log.addHandler(logging.StreamHandler(sys.stderr))
    paramiko_log.setLevel(logging.DEBUG)
    hosts = hosts.split(",")
    config = contract_config(ContractSetup(method=method, hosts=hosts, directory=Path(directory),
                                           python=python, config=config_text))
    jobs = [ComputeJob(host, command) for host in hosts for _ in range(int(per_host))]
    JobRunner(config, recipe_name="fds", error=threading.Event()).schedule(
        jobs, max_per_node=int(per_host))
    print(json.dumps([[job.results.get("state"), job.results.get("reason")] for job in jobs]))
    """)

#: Open files the recipe may have: enough to start, too few for every job at once (the
#: paramiko backend failed jobs here before it took descriptors from the budget, ssh too).
LIMIT = 22
#: Enough for the ssh recipe to start, too few for even one host's ssh (16 and 18 bite; at 22
#: every host waits for its turn in the descriptor budget and every job succeeds).
SSH_LIMIT = 18
#: Generous: a hang is what this would catch.
NO_HANG = 300
NAP = "/bin/sh -c 'sleep 1'"
WAITING = "waiting for file descriptors"


def run_recipe(tmp_path, bed, method: str, section: str, hosts: list[str], *, limit: int,
               per_host: int, command: str) -> tuple[list[list[str | None]], str]:
    """The recipe's jobs' [state, reason] pairs and its stderr; it must exit 0 without a
    traceback."""
    script = tmp_path / "recipe.py"
    script.write_text(RECIPE)
    config = f"[{method}]\n{section}[logging]\nbind_address = 127.0.0.1\n"
    done = subprocess.run(
        [sys.executable, str(script), str(limit), str(tmp_path), method, config,
         ",".join(hosts), str(per_host), bed.python, command],
        capture_output=True, text=True, timeout=NO_HANG, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "getpwuid" not in done.stderr
    assert "Exception in thread" not in done.stderr and "Traceback" not in done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == len(hosts) * per_host
    return results, done.stderr


@pytest.mark.slow
def test_out_of_descriptors_each_job_says_so_and_the_run_ends(ssh_testbed, tmp_path) -> None:
    section = f"config_file = {ssh_testbed.ssh_config}\nlaunch = agent\n"
    results, _ = run_recipe(tmp_path, ssh_testbed, "ssh", section, ssh_testbed.host_names,
                            limit=SSH_LIMIT, per_host=8, command=NAP)
    failed = [reason for state, reason in results if state != "succeeded"]
    assert failed, "the limit did not bite: lower SSH_LIMIT"
    for reason in failed:
        assert "file descriptors" in reason and "ulimit -n" in reason, reason


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["agent", "channel"])
def test_paramiko_at_a_limit_that_failed_jobs_every_job_succeeds(ssh_testbed, tmp_path,
                                                                 launch) -> None:
    section = f"config_file = {ssh_testbed.ssh_config}\nlaunch = {launch}\n"
    results, _ = run_recipe(tmp_path, ssh_testbed, "paramiko", section, ssh_testbed.host_names,
                            limit=LIMIT, per_host=8, command=NAP)
    assert [state for state, _ in results] == ["succeeded"] * len(results), results


@pytest.mark.slow
@pytest.mark.parametrize("limit, must_wait", [(128, False), (40, True)],
                         ids=["soft-limit-128", "soft-limit-40"])
def test_sixty_four_hosts_beyond_the_descriptor_budget_wait_and_every_job_succeeds(
        ssh_testbed, tmp_path, limit, must_wait) -> None:
    """64 host names over the bed's sshd daemons. At 128 (the issue's figure) they fit the
    budget; at 40 (the budget then has room for a few hosts) hosts wait for descriptors,
    which the backend says, and still every job succeeds."""
    aliases = alias_config(ssh_testbed.ssh_config, 64, tmp_path / "aliases")
    hosts = [f"h{index + 1}" for index in range(64)]
    results, stderr = run_recipe(tmp_path, ssh_testbed, "paramiko",
                                 f"config_file = {aliases}\n", hosts, limit=limit, per_host=2,
                                 command="/bin/true")
    assert [state for state, _ in results] == ["succeeded"] * len(results), results
    if must_wait:
        assert stderr.count(WAITING) >= 32, stderr[-3000:]

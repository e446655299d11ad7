"""Both generations of node scripts run unchanged: the seed's (arguments on the command line)
and the later framework's (``LOFARnodeTCP``, typed arguments fetched from the master), chosen
by ``[remote] node_arguments``; and ``ComputeJob(..., resources={"cores": N})``."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.errors import JobListError
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from tests.helpers import write_config

pytestmark = pytest.mark.slow

#: The trunk's shape, as its node scripts are written.
TRUNK_NODE = """\
import os, sys
from lofarpipe.support.lofarnode import LOFARnodeTCP

class trunknode(LOFARnodeTCP):
    def run(self, *args):
        self.outputs["got"] = list(args)
        self.outputs["omp"] = os.environ.get("OMP_NUM_THREADS")
        self.outputs["nr_cores"] = os.environ.get("NR_CORES")
        return 0

if __name__ == "__main__":
    jobid, jobhost, jobport = sys.argv[1:4]
    sys.exit(trunknode(jobid, jobhost, jobport).run_with_stored_arguments())
"""

ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LOFARROOT": "/opt/lofar", "PYTHONPATH": ""}
TYPED = [{"nested": {"list": [1, 2.5]}}, True, None, ["a", "b"], ENVIRONMENT, False, 7]


def trunk_node(tmp_path: Path, python: str = sys.executable) -> str:
    path = tmp_path / "trunknode.py"
    path.write_text(TRUNK_NODE)
    return f"{python} {path}"


def run(tmp_path: Path, text: str, jobs: list[ComputeJob], method: str = "local") -> None:
    config = load_config(write_config(tmp_path, text, method=method), job_name="args",
                         start_time="now")
    JobRunner(config, recipe_name="args", error=threading.Event()).schedule(jobs)


STORED = "[remote]\nmethod = local\nnode_arguments = stored\n"


def test_a_trunk_node_gets_typed_arguments_unchanged(tmp_path):
    job = ComputeJob("localhost", trunk_node(tmp_path), [*TYPED, ("a", 1)])
    run(tmp_path, STORED, [job])
    assert job.results["state"] == "succeeded", job.results
    assert job.results["got"] == [*TYPED, ["a", 1]]  # a tuple arrives as a list (JSON)


def test_a_trunk_node_started_the_seed_s_way_stops_with_the_line_to_set(tmp_path):
    job = ComputeJob("localhost", trunk_node(tmp_path), ["/data/x.MS"])
    run(tmp_path, "", [job])
    assert job.results["state"] == "failed" and job.results["returncode"] == 1
    assert "got" not in job.results  # run() never saw the wrong arguments
    lines = job.results["errors"].strip().splitlines()
    assert lines == ["lofarexec.node: trunknode fetches its arguments (run_with_stored_arguments)"
                     ", but this run passed them on the command line; set '[remote] "
                     "node_arguments = stored' in pipeline.cfg"]


def test_typed_arguments_on_the_command_line_are_refused_naming_the_line(tmp_path):
    jobs = [ComputeJob("localhost", trunk_node(tmp_path), ["x", {"a": 1}])]
    with pytest.raises(JobListError, match=r"job 0: .*'\[remote\] node_arguments = stored'") as e:
        run(tmp_path, "", jobs)
    assert "\n" not in str(e.value)
    assert "state" not in jobs[0].results  # refused before any job started


def test_the_seed_s_node_keeps_working_and_stops_when_given_stored_arguments(
        tmp_path, node_script):
    command = node_script("self.outputs['got'] = list(args)\nreturn 0")
    seed = ComputeJob("localhost", command, ["a b", 3])
    run(tmp_path, "", [seed])
    assert seed.results["state"] == "succeeded", seed.results
    assert seed.results["got"] == ["a b", "3"]
    wrong = ComputeJob("localhost", command, ["a b"])
    explicit = ComputeJob("localhost", command, ["c"], store_arguments=False)
    run(tmp_path, STORED, [wrong, explicit])
    assert explicit.results["got"] == ["c"]  # the job's own choice wins over the config
    assert wrong.results["state"] == "failed" and "got" not in wrong.results
    assert "but this run stored them; remove '[remote] node_arguments = stored'" in \
        wrong.results["errors"]


def test_cores_become_omp_num_threads_and_the_cmdline_template_s_nr_cores(tmp_path):
    jobs = [ComputeJob("localhost", trunk_node(tmp_path), [1], resources={"cores": 3}),
            ComputeJob("localhost", trunk_node(tmp_path), [2])]
    run(tmp_path, STORED, jobs)
    assert [job.results.get("omp") for job in jobs] == ["3", None], jobs[1].results
    cmdline = textwrap.dedent("""\
        [remote]
        method = cmdline
        node_arguments = stored
        [cmdline]
        template = env NR_CORES={nr_cores} sh -c {command}
        nr_cores = 1
        """)
    jobs = [ComputeJob("localhost", trunk_node(tmp_path), [1], resources={"cores": 5}),
            ComputeJob("localhost", trunk_node(tmp_path), [2])]
    run(tmp_path, cmdline, jobs, method="cmdline")
    assert [job.results.get("nr_cores") for job in jobs] == ["5", "1"], jobs[0].results
    assert jobs[0].results["omp"] == "5"


def test_a_trunk_node_gets_typed_arguments_over_ssh(ssh_testbed, tmp_path):
    text = (f"[remote]\nmethod = ssh\nnode_arguments = stored\n"
            f"[ssh]\nconfig_file = {ssh_testbed.ssh_config}\n"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
    command = trunk_node(tmp_path, ssh_testbed.python)
    jobs = [ComputeJob(host, command, TYPED, resources={"cores": 2})
            for host in ("node1", "node2")]
    run(tmp_path, text, jobs, method="ssh")
    for job in jobs:
        assert job.results["state"] == "succeeded", job.results
        assert job.results["got"] == TYPED
        assert job.results["omp"] == "2"

"""Typed arguments in, outputs back, values between processes, over the job channel."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import textwrap
import threading
from pathlib import Path
from xml.etree import ElementTree

import pytest

from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import encode_frame, hello, read_frame
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner

TCP_NODE = """\
import hashlib, json, os, signal, sys, time
from lofarexec.node import LOFARnodeTCP

class tcpnode(LOFARnodeTCP):
    def run(self, *args):
{body}

if __name__ == "__main__":
    sys.exit(tcpnode(sys.argv[1], sys.argv[2], sys.argv[3]).run_with_stored_arguments())
"""


def tcp_node(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tcpnode.py"
    path.write_text(TCP_NODE.format(body=textwrap.indent(textwrap.dedent(body), " " * 8)))
    return f"{sys.executable} {path}"


def run(config, jobs, **options):
    error = threading.Event()
    runner = JobRunner(config, recipe_name="exchange", error=error)
    runner.schedule(jobs, **options)
    return error


EVERY_JSON_TYPE = [None, True, False, 0, -7, 2**62, 3.25, -1e-300, "", "text", "ünïcødé ✓ \n\t",
                   [], [1, [2, [3, None]]], {}, {"nested": {"list": [1.5, "x"], "none": None}}]


def test_every_json_type_round_trips(make_config, tmp_path):
    command = tcp_node(tmp_path, 'self.outputs["echo"] = list(args)\nreturn 0')
    job = ComputeJob("node1", command, EVERY_JSON_TYPE, store_arguments=True)
    run(make_config(), [job])
    assert job.results["state"] == "succeeded", job.results
    assert job.results["echo"] == EVERY_JSON_TYPE


def test_a_50_mb_argument_never_touches_a_command_line(make_config, tmp_path):
    big = "x" * (50 * 1024 * 1024)
    command = tcp_node(tmp_path, textwrap.dedent("""\
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            self.outputs["cmdline_bytes"] = len(f.read())
        self.outputs["length"] = len(args[0])
        self.outputs["sha"] = hashlib.sha256(args[0].encode()).hexdigest()
        return 0"""))
    job = ComputeJob("node1", command, [big], store_arguments=True)
    run(make_config(), [job])
    assert job.results["state"] == "succeeded", job.results
    assert job.results["length"] == len(big)
    assert job.results["sha"] == hashlib.sha256(big.encode()).hexdigest()
    assert job.results["cmdline_bytes"] < 1000


def test_outputs_never_replace_lofarexecs_results(make_config, node_script, caplog):
    command = node_script('self.outputs.update(returncode=99, state="fake", mine=1)\nreturn 0')
    job = ComputeJob("node1", command)
    run(make_config(), [job])
    assert job.results["returncode"] == 0 and job.results["state"] == "succeeded"
    assert job.results["mine"] == 1
    assert "returncode, state not taken" in caplog.text


def test_a_node_that_cannot_deliver_its_outputs_fails_loudly(tmp_path):
    script = tmp_path / "lonely.py"
    script.write_text(
        "import sys\nfrom lofarexec.node import LOFARnode\n"
        "class lonely(LOFARnode):\n    def run(self):\n"
        "        self.outputs['x'] = 1\n        return 0\n"
        "sys.exit(lonely('127.0.0.1', 1).run_with_logging())\n")
    import os
    import subprocess

    env = {**os.environ, "LOFAREXEC_JOB_ID": "3", "LOFAREXEC_TOKEN": "t"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 1
    assert "the outputs did not reach the master" in result.stderr


def test_a_node_killed_before_acknowledging_is_a_clear_failure(make_config, tmp_path):
    command = tcp_node(tmp_path, 'self.outputs["half"] = 1\nos.kill(os.getpid(), signal.SIGKILL)')
    job = ComputeJob("node1", command, [], store_arguments=True)
    error = run(make_config(), [job])
    assert error.is_set()
    assert job.results["state"] == "failed" and "signal 9" in job.results["reason"]
    assert "half" not in job.results


def test_a_forged_result_for_another_job_is_refused(caplog):
    exchange = JobExchange()
    with LogServer(exchange=exchange) as server:
        token_a = server.register_job(1, "a")
        server.register_job(2, "b")
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(encode_frame(hello(1, token_a)))
            sock.sendall(encode_frame({"type": "outputs", "job_id": 2, "outputs": {"x": 1}}))
            assert sock.recv(1) == b""  # the server hung up on the forger
    assert exchange.take_outputs(2) is None and exchange.take_outputs(1) is None
    assert "forged frame: job 1 sent data for job 2" in caplog.text


def test_outputs_are_acknowledged_after_they_are_stored():
    exchange = JobExchange()
    with LogServer(exchange=exchange) as server:
        token = server.register_job(5, "h")
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(encode_frame(hello(5, token)))
            sock.sendall(encode_frame({"type": "outputs", "outputs": {"answer": 42}}))
            assert read_frame(sock)["type"] == "ack"
            assert exchange.take_outputs(5) == {"answer": 42}


def test_values_pass_between_nodes_and_the_master(make_config, tmp_path):
    command = tcp_node(tmp_path, textwrap.dedent("""\
        name, = args
        if name == "producer":
            self.publish("seed", {"value": 21})
        seed = self.wait_for("seed", timeout=30)
        self.publish(f"done-{name}", seed["value"] * 2)
        self.outputs["got"] = self.wait_for("from-master", timeout=30)
        return 0"""))
    jobs = [ComputeJob(f"node{i}", command, [name], store_arguments=True)
            for i, name in enumerate(["consumer", "producer", "consumer2"])]
    config = make_config()
    error = threading.Event()
    runner = JobRunner(config, recipe_name="board", error=error)
    board: list = []

    def master_side():  # what a recipe's controller thread does
        exchange = runner.exchange_when_running(timeout=30)
        board.append([exchange.get(f"done-{n}", timeout=30) for n in ("consumer", "producer")])
        exchange.put("from-master", "go")

    controller = threading.Thread(target=master_side)
    controller.start()
    runner.schedule(jobs)
    controller.join(30)
    assert board == [[42, 42]]
    assert [job.results.get("got") for job in jobs] == ["go"] * 3


def test_fail_fast_kills_the_others_at_once(make_config, node_script):
    command = node_script("if args[0] == 'fail':\n    return 3\ntime.sleep(60)\nreturn 0")
    jobs = [ComputeJob("n1", command, ["sleep"]), ComputeJob("n2", command, ["sleep"]),
            ComputeJob("n3", command, ["fail"]), ComputeJob("n1", command, ["queued"])]
    error = run(make_config(), jobs, max_per_node=1, fail_fast=True)
    assert error.is_set()
    states = [job.results["state"] for job in jobs]
    assert states == ["killed", "killed", "failed", "not_started"]
    assert "job 2 on n3 failed" in jobs[0].results["reason"]


def test_each_job_has_its_own_folder(make_config, node_script):
    command = node_script("open(os.path.join(self.job_folder, 'part.txt'), 'w').write(args[0])")
    config = make_config()
    jobs = [ComputeJob("n1", command, [f"data {i}"]) for i in range(3)]
    run(config, jobs)
    for job in jobs:
        assert (config.job_directory / "jobs" / str(job.id) / "part.txt").read_text() == \
            f"data {job.id}"


def test_report_lists_every_job_also_those_never_started():
    from lofarexec.run.outputs import return_json, return_xml

    done = ComputeJob("h1", "x")
    done.id, done.results = 0, {"host": "h1", "job_duration": 1.5, "returncode": 0,
                                "state": "succeeded"}
    skipped = ComputeJob("h2", "x")
    skipped.id, skipped.results = 1, {"host": "h2", "returncode": None, "state": "not_started",
                                      "reason": "run stopped (SIGTERM) before it started"}
    root = ElementTree.fromstring(return_xml([done, skipped]))
    assert root.tag == "nodes"
    assert [dict(e.attrib) for e in root] == [
        {"job_id": "0", "job_host": "h1", "duration": "1.500", "returncode": "0"},
        {"job_id": "1", "job_host": "h2", "duration": "", "returncode": ""}]
    assert json.loads(return_json([done, skipped]))[1]["state"] == "not_started"


def test_stored_arguments_must_be_json(make_config):
    with pytest.raises(ValueError, match="job 0: its stored arguments are not JSON"):
        run(make_config(), [ComputeJob("h", "x", [object()], store_arguments=True)])


@pytest.mark.slow
def test_outputs_arrive_for_500_jobs_on_4_hosts_over_ssh(ssh_testbed, tmp_path):
    from lofarexec.config import load_config
    from tests.helpers import REPO

    command = tcp_node(tmp_path, 'self.outputs["square"] = args[0] ** 2\nreturn 0')
    path = tmp_path / "pipeline.cfg"
    path.write_text(f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                    f"[deploy]\nengine_ppath = {REPO}\n[remote]\nmethod = ssh\n"
                    f"[ssh]\nconfig_file = {ssh_testbed.ssh_config}\n"
                    "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
    config = load_config(path, job_name="many", start_time="now")
    jobs = [ComputeJob(f"node{i % 4 + 1}", command, [i], store_arguments=True)
            for i in range(500)]
    error = run(config, jobs, max_per_node=4)
    failed = [job.results.get("reason") for job in jobs if job.results["state"] != "succeeded"]
    assert not error.is_set(), failed[:3]
    assert [job.results["square"] for job in jobs] == [i * i for i in range(500)]

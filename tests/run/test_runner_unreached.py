"""A node that cannot reach its run's log server: the job's results and the journal say so.

Real jobs, local and over the ssh test bed, are told a log address nobody listens on (the log
server is bound to 127.0.0.1, nodes are told 127.0.0.254): their connect is refused at once.
"""

from __future__ import annotations

import logging
import re
import sys
import threading

import pytest

from lofarexec.job import ComputeJob
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.run.journal import JournalWriter, read_journal
from lofarexec.run.runner import JobRunner

NOBODY = "127.0.0.254"
UNREACHED = re.compile(rf"could not reach the log server at {re.escape(NOBODY)}:\d+")
LOG_ADDRESSES = f"[logging]\nbind_address = 127.0.0.1\nadvertise_address = {NOBODY}\n"


def run(config, jobs) -> None:
    JobRunner(config, recipe_name="unreached", error=threading.Event(),
              plugin_manager=build_plugin_manager([JournalWriter()])).schedule(jobs)


@pytest.mark.slow
def test_a_node_that_cannot_reach_the_log_server_says_so_in_its_job_s_state(
        make_config, node_script, caplog):
    config = make_config(LOG_ADDRESSES)
    worker = node_script("self.logger.info('work done')\nreturn int(args[0])", name="worker")
    jobs = [ComputeJob("h0", worker, ["0"]), ComputeJob("h1", worker, ["3"]),
            # a plain program never connects: nothing to say about it
            ComputeJob("h2", f"{sys.executable} -c pass")]
    caplog.set_level(logging.INFO)
    run(config, jobs)

    succeeded, failed, plain = (job.results for job in jobs)
    assert succeeded["state"] == "succeeded"  # the work was done; its logs went to stderr
    assert UNREACHED.search(succeeded["reason"]), succeeded["reason"]
    assert "Connection refused" in succeeded["reason"]
    assert "work done" in succeeded["errors"]
    assert failed["state"] == "failed"
    assert "3" in failed["reason"] and UNREACHED.search(failed["reason"]), failed["reason"]
    assert plain["state"] == "succeeded" and plain.get("reason") is None, plain

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for job_id, host in ((0, "h0"), (1, "h1")):
        assert any(message.startswith(f"job {job_id} on {host}: ") and UNREACHED.search(message)
                   for message in warnings), warnings
    assert not any(message.startswith("job 2 ") for message in warnings), warnings

    entries = {entry["id"]: entry for entry in read_journal(config.job_directory)}
    assert entries[0]["state"] == "succeeded" and UNREACHED.search(entries[0]["reason"])
    assert UNREACHED.search(entries[1]["reason"])
    assert entries[2]["reason"] is None


@pytest.mark.slow
def test_a_remote_node_that_cannot_reach_the_log_server_says_so(ssh_testbed, make_config,
                                                               node_script):
    config = make_config(f"[ssh]\nconfig_file = {ssh_testbed.ssh_config}\n{LOG_ADDRESSES}",
                         method="ssh")
    script = node_script("self.logger.info('work done')\nreturn 0", name="remote")
    job = ComputeJob("node2", script.replace(sys.executable, ssh_testbed.python, 1))
    run(config, [job])
    assert job.results["state"] == "succeeded", job.results
    assert UNREACHED.search(job.results["reason"]), job.results["reason"]
    [entry] = read_journal(config.job_directory)
    assert entry["host"] == "node2" and UNREACHED.search(entry["reason"])

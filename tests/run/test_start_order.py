"""What is ready when a backend is asked to start a job (issue 17: start-up may be reordered for
speed, never past these): the run's log server already accepts the node's connection, and the
journal already holds the job's ``started`` line."""

from __future__ import annotations

import socket
import threading
from typing import Any

from lofarexec.backend import Backend, LaunchRequest, NothingToKill, Outcome, Report
from lofarexec.channel.protocol import ENV_JOB_DIRECTORY
from lofarexec.job import ComputeJob
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.plugin.spec import hookimpl
from lofarexec.run.journal import STARTED, JournalWriter, read_journal
from lofarexec.run.runner import JobRunner


class ProbeBackend(Backend):
    """Starts nothing: at each start it connects to the log address in the node's argv (the
    seed's ``<command> <log host> <log port> <args...>``) and reads the journal, as a node that
    boots at once and a control node that died at once would see them."""

    name = "probe"
    local_only = True
    seen: list[dict[str, Any]] = []

    def start(self, request: LaunchRequest, report: Report) -> NothingToKill:
        host, port = request.argv[1], int(request.argv[2])
        try:
            with socket.create_connection((host, port), timeout=5):
                connected = True
        except OSError:
            connected = False
        job_directory = request.environment[ENV_JOB_DIRECTORY]
        started = [entry["id"] for entry in read_journal(job_directory, every_line=True)
                   if entry.get("event") == STARTED]
        self.seen.append({"job": request.job_id, "connected": connected, "started": started})
        report(Outcome(returncode=0))
        return NothingToKill()


class ProbePlugin:
    @hookimpl
    def lofarexec_register_backends(self, registry: Any) -> None:
        registry.add(ProbeBackend)


def test_the_log_server_listens_and_the_journal_says_started_before_a_job_is_started(
        make_config):
    ProbeBackend.seen = []
    config = make_config(method="probe")
    jobs = [ComputeJob("localhost", "node", ["a"]), ComputeJob("localhost", "node", ["b"])]
    runner = JobRunner(config, recipe_name="order", error=threading.Event(),
                       plugin_manager=build_plugin_manager([JournalWriter(), ProbePlugin()]))
    runner.schedule(jobs, max_per_node=1)

    assert [job.results["state"] for job in jobs] == ["succeeded", "succeeded"]
    assert [(seen["job"], seen["connected"]) for seen in ProbeBackend.seen] == [
        (0, True), (1, True)], ProbeBackend.seen
    for seen in ProbeBackend.seen:
        assert seen["job"] in seen["started"], seen

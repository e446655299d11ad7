"""The contract suite on the paramiko backend, in both launch modes, over the ssh test bed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofarexec.job import ComputeJob
from lofarexec.testing.backend_promises import ContractSetup
from lofarexec.testing.sshbed import SshTestBed
from lofarexec.testing.sshbed_contract import SshBedContract


def logins(bed, host: str) -> int:
    """How many logins ``host``'s sshd has accepted so far."""
    return (Path(bed.directory) / "hosts" / host / "sshd.log").read_text().count(
        "Accepted publickey")


@pytest.mark.slow
class TestParamikoContract(SshBedContract):
    """The default mode: one agent per connection starts the host's jobs."""

    method = "paramiko"
    launch = "agent"
    #: Logins that five jobs at once with ``sessions = 2`` take: the agent needs one session.
    logins_for_five = 1

    def backend_section(self, bed: SshTestBed) -> str:
        return f"[paramiko]\nconfig_file = {bed.ssh_config}\nlaunch = {self.launch}\n"

    def failing_open_overrides(self, setup: ContractSetup) -> dict[str, dict[str, str]]:
        broken = setup.directory / "broken_ssh_config"
        broken.write_text("Host\n")  # a line paramiko cannot parse: open() raises
        return {"paramiko": {"config_file": str(broken)}}

    def test_connections_within_the_sessions_limit(self, contract_setup, ssh_testbed) -> None:
        before = logins(ssh_testbed, "node1")
        command = self.node(contract_setup, "nap_node", "time.sleep(1)\nreturn 0")
        jobs = [ComputeJob("node1", command) for _ in range(5)]
        error = self.run(contract_setup, jobs, max_per_node=5,
                         overrides={"paramiko": {"sessions": "2"}})
        assert not error.is_set(), [job.results.get("reason") for job in jobs]
        assert logins(ssh_testbed, "node1") - before == self.logins_for_five

    def test_host_down_fails_only_its_jobs(self, contract_setup, ssh_testbed) -> None:
        command = self.node(contract_setup, "ok_node", "return 0")
        jobs = [ComputeJob(host, command) for host in contract_setup.hosts * 2]
        ssh_testbed.stop_host("node2")
        try:
            self.run(contract_setup, jobs)
        finally:
            ssh_testbed.start_host("node2")
        for job in jobs:
            if job.host == "node2":
                assert job.results["state"] == "transport_error"
                reason = job.results["reason"]
                assert "node2: cannot connect to 127.0.0.3:" in reason, reason  # or quarantined
                assert "refused" in reason and "\n" not in reason
            else:
                assert job.results["state"] == "succeeded", job.results


@pytest.mark.slow
class TestParamikoChannelContract(TestParamikoContract):
    """``launch = channel``: a session channel and the launch wrapper per job."""

    launch = "channel"
    logins_for_five = 3  # two jobs a connection: beyond the sessions limit, more connections

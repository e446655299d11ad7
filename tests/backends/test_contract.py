"""The backend contract suite, run against every built-in transport for real."""

from __future__ import annotations

import sys

import pytest

from lofarexec.testing.contract import BackendContract, ContractSetup
from lofarexec.testing.sshbed import SshTestBed
from lofarexec.testing.sshbed_contract import SshBedContract


class TestLocalContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path):
        return ContractSetup(method="local", hosts=["node1", "node2", "node3", "node4"],
                             directory=tmp_path, python=sys.executable)


@pytest.mark.slow
class TestSshContract(SshBedContract):
    """The default: one ssh process per host runs the host agent."""

    method = "ssh"
    launch = "agent"

    def backend_section(self, bed: SshTestBed) -> str:
        return f"[ssh]\nconfig_file = {bed.ssh_config}\nlaunch = {self.launch}\n"


@pytest.mark.slow
class TestSshProcessContract(TestSshContract):
    """``launch = process``: an ssh process, a remote shell and the launch wrapper per job."""

    launch = "process"

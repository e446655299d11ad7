"""The backend contract suite, run against every built-in transport for real."""

from __future__ import annotations

import sys

import pytest

from lofarexec.testing.contract import BackendContract, ContractSetup
from lofarexec.testing.sshbed import UNREACHABLE_HOST


class TestLocalContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path):
        return ContractSetup(method="local", hosts=["node1", "node2", "node3", "node4"],
                             directory=tmp_path, python=sys.executable)


@pytest.mark.slow
class TestSshContract(BackendContract):
    """The default: one ssh process per host runs the host agent."""

    launch = "agent"

    @pytest.fixture
    def contract_setup(self, tmp_path, ssh_testbed):
        return ContractSetup(
            method="ssh", hosts=ssh_testbed.host_names, directory=tmp_path,
            python=ssh_testbed.python,
            config=f"""
                [ssh]
                config_file = {ssh_testbed.ssh_config}
                launch = {self.launch}
                [logging]
                bind_address = 127.0.0.1
                """,
        )

    def unreachable_host(self, setup: ContractSetup) -> str:
        return UNREACHABLE_HOST


@pytest.mark.slow
class TestSshProcessContract(TestSshContract):
    """``launch = process``: an ssh process, a remote shell and the launch wrapper per job."""

    launch = "process"

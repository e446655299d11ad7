"""The contract suite on the ssh test bed, for any backend that reaches hosts over ssh.

Subclass :class:`SshBedContract`, name the backend's ``method`` and write its own section of
``pipeline.cfg`` in :meth:`~SshBedContract.backend_section`::

    from lofarexec.testing.sshbed_contract import SshBedContract

    class TestMyBackendContract(SshBedContract):
        method = "mine"

        def backend_section(self, bed):
            return f"[mine]\\nconfig_file = {bed.ssh_config}\\n"

The tests need a pytest fixture ``ssh_testbed`` giving a running
:class:`~lofarexec.testing.sshbed.SshTestBed` (one per session is enough, e.g. from
:func:`~lofarexec.testing.sshbed.running_testbed`). The log channel binds 127.0.0.1, where the
bed's hosts reach it, and the bed's unreachable host is the backend's unreachable one.
"""

from __future__ import annotations

import pytest

from lofarexec.testing.backend_promises import ContractSetup
from lofarexec.testing.contract import BackendContract
from lofarexec.testing.sshbed import UNREACHABLE_HOST, SshTestBed

__all__ = ["SshBedContract"]


class SshBedContract(BackendContract):
    """:class:`~lofarexec.testing.contract.BackendContract` with its set-up on the ssh bed."""

    #: The backend's ``[remote] method`` name.
    method: str = ""

    def backend_section(self, bed: SshTestBed) -> str:
        """The backend's own ``pipeline.cfg`` text reaching the bed's hosts."""
        raise NotImplementedError

    @pytest.fixture
    def contract_setup(self, tmp_path, ssh_testbed: SshTestBed) -> ContractSetup:
        return ContractSetup(
            method=self.method, hosts=ssh_testbed.host_names, directory=tmp_path,
            python=ssh_testbed.python,
            config=self.backend_section(ssh_testbed) + "[logging]\nbind_address = 127.0.0.1\n")

    def unreachable_host(self, setup: ContractSetup) -> str:
        return UNREACHABLE_HOST

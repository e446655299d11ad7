"""lofarexec's pytest plugin for plugin authors: fixtures and the contract suite, one line away.

Enable it with ``-p lofarexec.testing.pytest_plugin`` (in ``addopts`` of your
``[tool.pytest.ini_options]``) or ``pytest_plugins = ["lofarexec.testing.pytest_plugin"]`` in
your top-level ``conftest.py``. It is not loaded otherwise, so it costs nothing to anyone who
does not ask for it. It gives:

``lofarexec_method``
    The backend the ``lofarexec_run`` fixture uses: ``"local"`` unless you override the
    fixture (or parametrize it) in your own ``conftest.py``.
``lofarexec_run``
    A :class:`RecipeRun`: write node scripts (:meth:`RecipeRun.node`) and run jobs through the
    whole runner (scheduler, log receiver, journal) with that backend, in the test's
    ``tmp_path``; ``config`` adds ``pipeline.cfg`` text (your backend's section).
``ssh_testbed``
    Four real sshd hosts ``node1`` .. ``node4`` on loopback addresses, one per session
    (:class:`~lofarexec.testing.sshbed.SshTestBed`). Skipped, with the reason, where they cannot
    run (not root, no ``/usr/sbin/sshd``); under ``CI=true`` that is a failure instead.
    :class:`~lofarexec.testing.sshbed_contract.SshBedContract` uses it.

and re-exports the contract suite, :class:`BackendContract` and :class:`ContractSetup`
(subclass the first in a ``Test...`` class; see :mod:`lofarexec.testing.contract`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lofarexec.testing.backend_promises import ContractSetup
from lofarexec.testing.contract import BackendContract

if TYPE_CHECKING:
    from lofarexec.job import ComputeJob
    from lofarexec.testing.sshbed import SshTestBed

__all__ = ["BackendContract", "ContractSetup", "RecipeRun", "lofarexec_method", "lofarexec_run",
           "require_sshd", "ssh_testbed"]


class RecipeRun:
    """Runs jobs as a recipe's ``_schedule_jobs`` would, with one backend, in one folder."""

    def __init__(self, method: str, directory: Path) -> None:
        self.method = method
        self.directory = directory
        self.config = ""
        """Extra ``pipeline.cfg`` text: the backend's own section, ``[logging]`` addresses."""
        self._suite = BackendContract()  # its node() and run() helpers, not its tests

    @property
    def setup(self) -> ContractSetup:
        hosts = ["node1", "node2", "node3", "node4"]
        return ContractSetup(method=self.method, hosts=hosts, directory=self.directory,
                             python=sys.executable, config=self.config)

    def node(self, name: str, body: str) -> str:
        """Write a node script whose ``run(self, *args)`` body is ``body``; its command line."""
        return self._suite.node(self.setup, name, body)

    def __call__(self, jobs: list[ComputeJob], *, max_per_node: int | None = None,
                 overrides: dict[str, dict[str, str]] | None = None) -> threading.Event:
        """Run ``jobs`` to their end; the recipe's ``error`` event (set when any failed)."""
        return self._suite.run(self.setup, jobs, max_per_node=max_per_node, overrides=overrides)


@pytest.fixture
def lofarexec_method() -> str:
    """The ``[remote] method`` of :func:`lofarexec_run`; override it to test your backend."""
    return "local"


@pytest.fixture
def lofarexec_run(lofarexec_method: str, tmp_path: Path) -> RecipeRun:
    """A :class:`RecipeRun` with the backend :func:`lofarexec_method` names."""
    return RecipeRun(lofarexec_method, tmp_path)


def require_sshd() -> None:
    """Skip the test, saying why, when the ssh test bed cannot run here; fail under CI."""
    from lofarexec.testing.sshbed import SSHD

    problem = None
    if os.geteuid() != 0:
        problem = "the sshd test hosts need root"
    elif not SSHD.exists():
        problem = "no /usr/sbin/sshd: install openssh-server (apt-get install openssh-server)"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem} (CI is set: the ssh tests must run)")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def ssh_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTestBed]:
    """Four real sshd hosts, node1..node4 on 127.0.0.2-5, shared by the whole session."""
    from lofarexec.testing.sshbed import running_testbed

    require_sshd()
    with running_testbed(tmp_path_factory.mktemp("sshbed"), hosts=4) as bed:
        yield bed

"""The transport interface's own promises (:mod:`lofarexec.backend`), checked on a backend alone.

Part of the contract suite: :class:`~lofarexec.testing.contract.BackendContract` inherits these
tests, so every backend that runs the suite runs them too. They drive the backend as the
scheduler may, without the runner: ``open``, ``start`` of plain commands (no node script, no
log channel), ``kill`` and ``close``, and count the calls of ``report``:

- ``report`` is called exactly once per job: for a job that ends, one that is killed, one whose
  program does not exist, and one started on a host that cannot be reached;
- ``JobHandle.kill()`` raises nothing, also called twice and after the job has ended;
- ``close()`` is safe twice, and after an ``open()`` that failed.

Two hooks say how to provoke the failures a backend may or may not have; each test that needs
one is skipped, with the reason, where the backend keeps the default ``None``:
:meth:`BackendPromises.unreachable_host` and :meth:`BackendPromises.failing_open_overrides`.
"""

from __future__ import annotations

import dataclasses
import secrets
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import lofarexec
from lofarexec.backend import Backend, LaunchRequest, Outcome
from lofarexec.config import PipelineConfig, load_config
from lofarexec.errors import LofarexecError
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.run.runner import node_environment

PACKAGE_ROOT = str(Path(lofarexec.__file__).resolve().parent.parent)
#: What every transport reports for a node program that does not exist.
MISSING_PROGRAM_REASON = "cannot start '/no/such/node-program': No such file or directory"
#: Seconds a test waits for a job's report (a first connection to a host included).
REPORT_TIMEOUT = 60.0


@dataclasses.dataclass
class ContractSetup:
    """How to reach the backend under test."""

    method: str
    hosts: list[str]
    directory: Path
    """A folder seen at the same path here and on every host."""
    python: str
    """The interpreter that runs node scripts on the hosts."""
    config: str = ""
    """Extra ``pipeline.cfg`` text: the backend's own section, ``[logging]`` addresses."""


def contract_config(setup: ContractSetup,
                    overrides: dict[str, dict[str, str]] | None = None) -> PipelineConfig:
    """Write the suite's ``pipeline.cfg`` in ``setup.directory`` and read it back."""
    config_path = setup.directory / "pipeline.cfg"
    config_path.write_text(
        f"[DEFAULT]\nruntime_directory = {setup.directory}/runtime\n"
        f"[deploy]\nengine_ppath = {PACKAGE_ROOT}\n"
        f"[remote]\nmethod = {setup.method}\n"
        + textwrap.dedent(setup.config))
    return load_config(config_path, job_name="contract", start_time="now", overrides=overrides)


class CountedReports:
    """A ``report`` callback that keeps every outcome it is given, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._first = threading.Event()

    def __call__(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
        self._first.set()

    def wait(self, timeout: float = REPORT_TIMEOUT) -> Outcome:
        """The first outcome, once there is one; fails the test after ``timeout`` seconds."""
        assert self._first.wait(timeout), f"report was not called within {timeout:g} s"
        return self.outcomes[0]

    @property
    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)


class BackendPromises:
    """Tests of :mod:`lofarexec.backend`'s promises; mixed into ``BackendContract``."""

    # -- hooks: override where the backend can fail this way -----------------------------------
    def unreachable_host(self, setup: ContractSetup) -> str | None:
        """A host name that ``start`` accepts but cannot reach (e.g. nothing listens on its
        address), for the report-once test of a failed connection. Default None: the test is
        skipped (a backend whose jobs all run on this machine has no such host)."""
        return None

    def failing_open_overrides(self, setup: ContractSetup) -> dict[str, dict[str, str]] | None:
        """``pipeline.cfg`` values, ``{section: {key: value}}``, with which ``open()`` raises a
        :class:`~lofarexec.errors.LofarexecError` (e.g. a launcher program that does not
        exist). Default None: the close-after-failed-open test is skipped (a backend whose
        ``open`` cannot fail)."""
        return None

    # -- helpers -------------------------------------------------------------------------------
    def backend(self, setup: ContractSetup,
                overrides: dict[str, dict[str, str]] | None = None) -> Backend:
        """The backend under test built from the suite's ``pipeline.cfg``, not yet opened."""
        config = contract_config(setup, overrides)
        backend_class = build_plugin_manager().backends.get(setup.method)
        self._environment = node_environment(config)
        return backend_class(config.section_settings(setup.method, backend_class.Settings))

    @contextmanager
    def opened(self, setup: ContractSetup) -> Iterator[Backend]:
        backend = self.backend(setup)
        try:
            backend.open()
            yield backend
        finally:
            backend.close()

    def request(self, host: str, *argv: str, job_id: int = 1) -> LaunchRequest:
        """A launch of ``argv`` (a plain program: no log channel is listening) on ``host``."""
        return LaunchRequest(job_id=job_id, host=host, argv=argv,
                             environment=self._environment, token=secrets.token_hex(16),
                             recipe_name="contract")

    # -- report: exactly once ------------------------------------------------------------------
    def test_report_once_and_kill_after_the_end(self, contract_setup: ContractSetup) -> None:
        reports = CountedReports()
        with self.opened(contract_setup) as backend:
            request = self.request(contract_setup.hosts[0], "/bin/sh", "-c", "exit 3")
            handle = backend.start(request, reports)
            assert reports.wait().returncode == 3, reports.outcomes
            handle.kill()  # the job has ended: nothing to do, nothing raised
            handle.kill()
        assert len(reports.outcomes) == 1, reports.outcomes

    def test_report_once_for_a_missing_node_program(self, contract_setup: ContractSetup) -> None:
        reports = CountedReports()
        with self.opened(contract_setup) as backend:
            request = self.request(contract_setup.hosts[0], "/no/such/node-program")
            handle = backend.start(request, reports)
            outcome = reports.wait()
            handle.kill()
        assert len(reports.outcomes) == 1, reports.outcomes
        assert outcome.returncode is None and outcome.transport_error, outcome
        # every transport in the same words (after the host's name, where it gives one)
        assert outcome.transport_error.endswith(MISSING_PROGRAM_REASON), outcome
        assert "@lofarexec-status" not in outcome.errors, "the wrapper's status line is no stderr"

    def test_report_once_for_an_unreachable_host(self, contract_setup: ContractSetup) -> None:
        host = self.unreachable_host(contract_setup)
        if host is None:
            pytest.skip(f"{type(self).__name__} names no unreachable host "
                        "(override unreachable_host)")
        reports = CountedReports()
        with self.opened(contract_setup) as backend:
            handle = backend.start(self.request(host, "/bin/true"), reports)
            outcome = reports.wait()
            handle.kill()
            handle.kill()
        assert len(reports.outcomes) == 1, reports.outcomes
        assert outcome.returncode is None and outcome.transport_error, outcome

    # -- kill: safe twice ----------------------------------------------------------------------
    def test_kill_twice_while_running(self, contract_setup: ContractSetup) -> None:
        reports = CountedReports()
        with self.opened(contract_setup) as backend:
            request = self.request(contract_setup.hosts[0], "/bin/sh", "-c", "exec sleep 300")
            handle = backend.start(request, reports)
            handle.kill()
            handle.kill()
            outcome = reports.wait()
            handle.kill()  # and once more, after its report
        assert len(reports.outcomes) == 1, reports.outcomes
        assert outcome.returncode != 0, outcome

    # -- close: safe twice, also after a failed open -------------------------------------------
    def test_close_twice(self, contract_setup: ContractSetup) -> None:
        reports = CountedReports()
        with self.opened(contract_setup) as backend:
            backend.start(self.request(contract_setup.hosts[0], "/bin/true"), reports)
            assert reports.wait().returncode == 0, reports.outcomes
        backend.close()  # the second close, after the one on leaving the block
        assert len(reports.outcomes) == 1, reports.outcomes

    def test_close_after_a_failed_open(self, contract_setup: ContractSetup) -> None:
        overrides = self.failing_open_overrides(contract_setup)
        if overrides is None:
            pytest.skip(f"{type(self).__name__} has no settings that make open() fail "
                        "(override failing_open_overrides)")
        backend = self.backend(contract_setup, overrides)
        with pytest.raises(LofarexecError):
            backend.open()
        backend.close()
        backend.close()

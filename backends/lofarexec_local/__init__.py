"""The ``local`` backend: every job runs as a subprocess of the control node, whatever its host.

This is the local-only mode for trying a recipe written for a cluster on one machine: the
scheduler still queues and limits jobs per host *name*, so ``max_per_node`` behaves as it would
on the cluster, but every node script runs here. The command is split with :func:`shlex.split`
by the caller and run as an argv list, never through a shell; the job's token reaches the node
through its environment, which ``ps`` does not show to other users.

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport`, and is registered through the ``lofarexec`` entry-point group in
``pyproject.toml``.
"""

from __future__ import annotations

import dataclasses
import os

from lofarexec import Backend, JobHandle, LaunchRequest, hookimpl
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import (
    ExecEnvironment,
    ProcessLauncher,
    check_shared_settings,
    job_identity,
    kill_grace_field,
)

from .lifeline import Lifeline
from .slots import SlotWatchers


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    """``[local]`` section of ``pipeline.cfg``."""

    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)


class LocalBackend(Backend):
    """Runs each node script as a local process in a session of its own."""

    name = "local"
    audit = True  # the end-of-run audit looks for leftover processes through start
    Settings = LocalSettings
    local_only = True  # nodes run here: the log receiver need only listen on loopback

    # Starts from several threads: the worker that sees one job end starts the host's next job
    # and watches it itself, while the other workers do the same (process creation lets go of
    # the interpreter lock), as the workers of a plain loop would (see .slots).
    parallel_start = True

    def open(self) -> None:
        self._lifeline = Lifeline(self.settings.kill_grace)  # first: every job needs its marker
        self._launcher = ProcessLauncher(kill_grace=self.settings.kill_grace,
                                         name="local-jobs")
        self._launcher.start()
        self._slots = SlotWatchers(self._launcher, kill_grace=self.settings.kill_grace)

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        environment = self._base_environment(request).plus(job_identity(request))
        return self._slots.launch(request.argv, report, environment)

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The node's own argv: it runs here, as it is, with no launcher in between."""
        return LaunchPreview(tuple(request.argv),
                             note="the job's variables and token in its environment")

    def _base_environment(self, request: LaunchRequest) -> ExecEnvironment:
        """This process's environment with the run's node variables on top, encoded once per
        run (every request of a run carries the same ``environment`` mapping); without the
        per-job variables, so that adding them to it is a plain append."""
        cached = getattr(self, "_cached_environment", None)
        if cached is None or cached[0] is not request.environment:
            merged = {**os.environ, **request.environment, **self._lifeline.variable()}
            for name in job_identity(request):  # never inherited from this process
                merged.pop(name, None)
            self._cached_environment = cached = (request.environment, ExecEnvironment(merged))
        return cached[1]

    def close(self) -> None:
        slots = getattr(self, "_slots", None)
        if slots is not None:
            slots.close()
            self._launcher.close()
        lifeline = getattr(self, "_lifeline", None)
        if lifeline is not None:
            lifeline.close()


@hookimpl
def lofarexec_register_backends(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(LocalBackend)

"""Every hook lofarexec calls, in one place.

Plugins implement hooks with ``@lofarexec.hookimpl`` on module-level functions or methods and
are found through the ``lofarexec`` entry-point group::

    [project.entry-points.lofarexec]
    mybackend = "my_package.plugin"

Hooks are called with keyword arguments only; an implementation may accept fewer arguments than
the specification, so adding an argument later breaks no plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from lofarexec.backend import BackendRegistry
    from lofarexec.context import RunContext
    from lofarexec.job import ComputeJob

PROJECT_NAME = "lofarexec"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
@hookspec
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    """Add the plugin's backend classes with ``registry.add(BackendClass)``.

    Called once, when the plugin manager is built, for every installed plugin. The built-in
    backends register through this hook exactly as third-party ones do.

    :param registry: the :class:`~lofarexec.backend.BackendRegistry` of this process.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# Run lifecycle: one run is one ``_schedule_jobs`` call
# ---------------------------------------------------------------------------------------------
@hookspec
def lofarexec_run_started(run: RunContext, jobs: list[ComputeJob]) -> None:
    """Called before the first job of a ``_schedule_jobs`` call starts.

    :param run: the :class:`~lofarexec.context.RunContext`: recipe name, backend name, job
        directory, log address.
    :param jobs: the jobs of this call, in input order (``job.id`` is set).

    .. versionadded:: 0.1
    """


@hookspec
def lofarexec_run_finished(run: RunContext, jobs: list[ComputeJob], error: bool) -> None:
    """Called after every job of the call has a final state, also when the run was killed.

    :param run: as for :func:`lofarexec_run_started`.
    :param jobs: the same jobs, with ``results`` filled in.
    :param error: whether any job did not succeed (the recipe's ``error`` event).

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# Job lifecycle: called from the scheduler's thread; keep implementations quick
# ---------------------------------------------------------------------------------------------
@hookspec
def lofarexec_job_started(run: RunContext, job: ComputeJob) -> None:
    """Called just before a job's backend is asked to start it: once per attempt of a job
    that is retried (``[remote] retries``), whose ``attempts`` then counts up.

    :param run: as for :func:`lofarexec_run_started`.
    :param job: the job; ``job.results`` has ``state`` ``running``, ``start_time``, ``attempts``.

    .. versionadded:: 0.1
    """


@hookspec
def lofarexec_job_finished(run: RunContext, job: ComputeJob) -> None:
    """Called once a job has its final state (also ``not_started`` ones of a killed run).

    :param run: as for :func:`lofarexec_run_started`.
    :param job: the job, with complete ``results``.

    .. versionadded:: 0.1
    """

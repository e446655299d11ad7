"""The ``srun`` backend: each job is ``srun -N1 -n1 -w HOST`` running the launch wrapper.

Each job runs as::

    srun -N1 -n1 -w HOST --quiet -J NAME --input=FIFO [steps: --exact | jobs: -p -A] \\
        [-c N] [extra arguments] -- python3 -I -S -c <launch wrapper> <node argv>

as an argument list (no shell anywhere: srun passes the words to the node unchanged). The
``[srun] mode`` picks between a step of the current allocation (``SLURM_JOB_ID`` set, as in a
pipeline started under ``salloc``/``sbatch``; ``--exact`` so that steps share the allocation
instead of each taking all its CPUs) and a job of its own.

Why the launch wrapper rather than ``--export``: the wrapper is what gives the node's exact exit
status (srun's own status cannot be trusted: it has been seen exiting 0 for a dead node, and it
cannot tell "the node exited 1" from "srun failed"), keeps the token and environment off every
command line (they travel on the job's input, base64 in one line), and kills the node's whole
process group when the input closes. How the input reaches the task, why it is a FIFO, and when
a failed launch is retried: see :mod:`lofarexec_srun.job`.

Launch storms: at most ``max_concurrent_launches`` srun processes are between their start and
the moment they read the job's input (allocation and step creation done, the step's task being
started); later jobs wait in the order they came, in the worker pool's queue (a small work item
each, no thread). A job that runs no longer counts: the cap throttles launches, not how many
jobs run, which stays the scheduler's business.

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from lofarexec import (
    Backend,
    BackendRegistry,
    ConfigError,
    JobHandle,
    LaunchRequest,
    Outcome,
    hookimpl,
)
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import ProcessLauncher, RemoteLaunch, host_name_problem, remote_launch
from lofarexec_srun.job import Alarms, SrunJob
from lofarexec_srun.settings import SrunSettings

#: Seconds after EOF (plus the kill grace) before a step that has not ended is cancelled.
FALLBACK_MARGIN = 3.0
#: Seconds ``close()`` gives running jobs to end after their input was closed.
CLOSE_TIMEOUT = 10.0
#: Seconds between SIGTERM and SIGKILL for srun itself: on TERM it cancels the job or step
#: and waits for Slurm to confirm; killed sooner, it can leave the allocation behind.
SRUN_KILL_GRACE = 10.0


class SrunBackend(Backend):
    """Runs each node script as a Slurm job or step through ``srun``, launches capped."""

    name = "srun"
    # No end-of-run audit (audit stays False): Slurm itself ends every process of a job or
    # step when it ends (ProctrackType=proctrack/cgroup), and an audit through srun would be
    # one more Slurm job per host at the end of every run, queued behind others' jobs.
    Settings = SrunSettings

    def open(self) -> None:
        settings = self.settings
        if shutil.which(settings.srun) is None:
            raise ConfigError(f"{settings.srun}: no such program on PATH; install Slurm's "
                              "client (Debian: slurm-client) or fix the path",
                              section="srun", key="srun")
        self.steps = self._steps()
        self.srun_environment = _srun_environment(steps=self.steps)
        self.fifo_directory = tempfile.mkdtemp(prefix="lofarexec-srun-")  # 0700: the headers
        self.fallback_delay = settings.kill_grace + FALLBACK_MARGIN
        self.alarms = Alarms()
        self.launcher = ProcessLauncher(kill_grace=SRUN_KILL_GRACE, name="srun-jobs")
        self.launcher.start()
        self._pool = ThreadPoolExecutor(settings.max_concurrent_launches,
                                        thread_name_prefix="srun-launch")
        self._state = threading.Condition()
        self._live: set[SrunJob] = set()
        self.launching = 0
        """srun processes now between their start and reading the job's input."""
        self.peak_launching = 0
        """The most there ever were at once (never above ``max_concurrent_launches``)."""

    def _steps(self) -> bool:
        """Whether jobs are steps of the current allocation (else Slurm jobs of their own)."""
        steps = self.settings.mode == "steps" or (
            self.settings.mode == "auto" and bool(os.environ.get("SLURM_JOB_ID")))
        if steps and not os.environ.get("SLURM_JOB_ID"):
            raise ConfigError("mode = steps, but SLURM_JOB_ID is not set: run the pipeline "
                              "inside an allocation (salloc/sbatch) or use mode = jobs",
                              section="srun", key="mode")
        return steps

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The srun command of ``request`` (its input FIFO is made at the start)."""
        if not hasattr(self, "steps"):
            self.steps = self._steps()
        launch = remote_launch(request, python=self.settings.remote_python,
                               kill_grace=self.settings.kill_grace)
        where = "control node" if shutil.which(self.settings.srun) else (
            f"control node (but {self.settings.srun!r} is not on PATH: the run would fail)")
        return LaunchPreview(tuple(self.srun_argv(request, "<input FIFO>", launch)), where=where,
                             note="environment, token and status marker through the FIFO")

    def srun_argv(self, request: LaunchRequest, fifo: str, launch: RemoteLaunch) -> list[str]:
        """The srun command for one launch of ``request``, its input read from ``fifo``."""
        settings = self.settings
        name = settings.job_name or f"lofarexec-{request.recipe_name}"
        argv = [settings.srun, "-N1", "-n1", "-w", request.host, "--quiet", "-J", name,
                f"--input={fifo}"]
        if self.steps:
            argv.append("--exact")
        else:
            argv += [f"--partition={settings.partition}"] if settings.partition else []
            argv += [f"--account={settings.account}"] if settings.account else []
        if settings.cpus_per_task:
            argv.append(f"--cpus-per-task={settings.cpus_per_task}")
        return [*argv, *shlex.split(settings.extra_arguments), "--", *launch.argv]

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        launch = remote_launch(request, python=self.settings.remote_python,
                               kill_grace=self.settings.kill_grace)
        job = SrunJob(self, request, launch, report)
        problem = host_name_problem(request.host)  # also no ',' or '[': srun's host lists
        if problem is not None:
            job.finish(Outcome(None, transport_error=problem))
            return job
        with self._state:
            self._live.add(job)
        self._pool.submit(job.run_launches)
        return job

    def close(self) -> None:
        """Kill what still runs (by EOF first), wait for every report, stop the threads."""
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        with self._state:
            live = list(self._live)
        for job in live:
            job.kill()
        with self._state:
            self._state.wait_for(lambda: not self._live, CLOSE_TIMEOUT)
        self.launcher.close()  # TERMs any srun left: its job reports, its worker goes on
        pool.shutdown(wait=True)
        self.alarms.close()
        shutil.rmtree(self.fifo_directory, ignore_errors=True)
        self._pool = None  # type: ignore[assignment]

    # -- for SrunJob -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def launch_slot(self) -> Iterator[None]:
        """Counts a launch in flight (the pool's size is what caps them)."""
        with self._state:
            self.launching += 1
            self.peak_launching = max(self.peak_launching, self.launching)
        try:
            yield
        finally:
            with self._state:
                self.launching -= 1

    def forget(self, job: SrunJob) -> None:
        with self._state:
            self._live.discard(job)
            self._state.notify_all()


def _srun_environment(*, steps: bool) -> dict[str, str]:
    """srun's environment: ours, without the allocation's variables when making new jobs.

    srun reads SLURM_JOB_ID (and the allocation's sizes) from its environment: a pipeline that
    runs inside an allocation but asks for ``mode = jobs`` must not have its jobs turned into
    steps of it. SLURM_CONF (which cluster) is kept.
    """
    if steps:
        return dict(os.environ)
    return {name: value for name, value in os.environ.items()
            if not name.startswith("SLURM_") or name == "SLURM_CONF"}


@hookimpl
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    registry.add(SrunBackend)


__all__ = ["SrunBackend", "SrunSettings"]

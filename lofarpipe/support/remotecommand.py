"""``lofarpipe.support.remotecommand``: ``ComputeJob``, ``RemoteCommandRecipeMixIn`` and the
helpers recipes import from the framework's module.

- :class:`ProcessLimiter`: per key (a host), a bounded semaphore of ``nproc`` (no bound when
  ``nproc`` is false), for recipes that limit their own threads per host.
- :func:`threadwatcher`: start a pool of threads and wait for them; on Ctrl-C, SIGTERM or an
  exception, set the kill switch so they stop, and still wait for all of them.
- :func:`run_remote_command`: the command line that starts ``command`` on ``host`` with the
  ``[remote] method`` of the configuration, for recipes that start nodes themselves; jobs run
  through ``ComputeJob`` go through lofarexec's backends instead.
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import signal
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lofarexec.job import ComputeJob
from lofarexec.recipe import RemoteCommandRecipeMixIn

__all__ = [
    "ComputeJob",
    "ProcessLimiter",
    "RemoteCommandRecipeMixIn",
    "run_remote_command",
    "threadwatcher",
]


class _Unlimited:
    """A semaphore that never blocks: the :class:`ProcessLimiter` of no bound."""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        pass


class ProcessLimiter(collections.defaultdict[Any, Any]):
    """``limiter[host]`` is that host's semaphore, made on first use."""

    def __init__(self, nproc: int | str | None = None) -> None:
        if nproc:
            bound = int(nproc)
            super().__init__(lambda: threading.BoundedSemaphore(bound))
        else:
            super().__init__(_Unlimited)


def threadwatcher(threadpool: Sequence[threading.Thread], logger: logging.Logger,
                  killswitch: threading.Event) -> None:
    """Start every thread of ``threadpool`` and wait until all have ended.

    Ctrl-C, SIGTERM (when called in the main thread) or an exception while waiting sets
    ``killswitch``, which the threads are to watch; they are still waited for.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: killswitch.set())
    started: list[threading.Thread] = []
    try:
        for thread in threadpool:
            thread.start()
            started.append(thread)
        logger.info("Waiting for compute threads...")
        for thread in started:
            thread.join()
    except BaseException:
        logger.warning("Processing interrupted: shutting down")
        killswitch.set()
    finally:
        for thread in started:
            thread.join()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _config_get(config: Any, key: str) -> str | None:
    try:
        return str(config.get("remote", key))
    except Exception:  # no section, no option: ConfigParser's errors, or a plain mapping's
        return None


def run_remote_command(config: Any, logger: logging.Logger, host: str, command: str,
                       env: Mapping[str, Any], arguments: Iterable[Any] | None = None,
                       resources: Mapping[str, Any] | None = None) -> list[str]:
    """The argument list that starts ``command arguments...`` on ``host``.

    ``[remote] method`` chooses it as in the framework: ``local`` (``/bin/sh -c`` here),
    ``mpirun``, ``custom_cmdline`` (``[remote] cmdline`` with ``{host}``, ``{command}``,
    ``{env}``, ``{docker_env}``, ``{uid}``, ``{slurm_job_id}``, ``{job_name}``,
    ``{nr_cores}``), ``slurm_srun``/``slurm_srun_cep3``, ``cep_mpi``, else ``ssh``.
    """
    method = _config_get(config, "method")
    args = [str(argument) for argument in arguments or ()]
    line = " ".join([command, *args])
    logger.debug("Dispatching command to %s with %s", host, method or "ssh")
    if method == "local":
        return ["/bin/sh", "-c", line]
    if method == "mpirun":
        exports = [part for key, value in env.items() for part in ("-x", f"{key}={value}")]
        return ["/usr/bin/mpirun", "-host", host, *exports, "--", *command.split(), *args]
    if method == "cep_mpi":
        return ["mpiexec", "-x", "PYTHONPATH", "-x", "LD_LIBRARY_PATH", "-x", "PATH", "-H",
                host, "/bin/sh", "-c", "hostname ; " + line]
    if method in ("slurm_srun", "slurm_srun_cep3"):
        return ["srun", "-N 1", "-n 1", "-w", host, "/bin/sh", "-c", "hostname && " + line]
    if method == "custom_cmdline":
        return _custom_cmdline(config, host, command, env, args, resources or {})
    assignments = [f"{key}={shlex.quote(str(value))}" for key, value in env.items()]
    remote = " ".join([*assignments, command, *(shlex.quote(arg) for arg in args)])
    return ["ssh", "-n", "-tt", "-x", host, "--", "/bin/sh", "-c", shlex.quote(remote)]


def _custom_cmdline(config: Any, host: str, command: str, env: Mapping[str, Any],
                    args: list[str], resources: Mapping[str, Any]) -> list[str]:
    names = [os.path.basename(part) for part in command.split()]
    job_name = names[1] if len(names) > 1 and names[0].startswith("python") else names[0]
    template = _config_get(config, "cmdline") or "{command}"
    return template.format(
        uid=os.geteuid(), slurm_job_id=os.environ.get("SLURM_JOB_ID"), host=host,
        env=" ".join(f"{key}={value}" for key, value in env.items()),
        docker_env=" ".join(f"-e {key}={value}" for key, value in env.items()),
        command=" ".join([command, *args]), job_name=job_name,
        nr_cores=resources.get("cores", 2)).split()

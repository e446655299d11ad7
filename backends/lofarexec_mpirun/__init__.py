"""The ``mpirun`` backend: one Open MPI ``mpirun -np 1`` per job, on the job's host.

Each job runs as::

    mpirun [--allow-run-as-root] [--oversubscribe] --bind-to none \\
        --mca odls_base_sigkill_timeout N [--mca plm_rsh_agent AGENT] [ARGUMENTS] \\
        -np 1 --host HOST -- python3 -I -S -c <launch wrapper> <node argv...>

The argv is handed to mpirun as a list, never through a shell, and Open MPI passes it on to its
daemon (``orted``) on the host in its own launch message, so every argument reaches the node
byte for byte. Open MPI starts jobs on host names it recognises as this machine
(``localhost``, ``127.0.0.1``, its host name and addresses) itself, and on other hosts through
``orted`` started by ``plm_rsh_agent`` (``ssh`` unless ``rsh_agent`` says otherwise).

Why the node runs under :mod:`lofarexec.hostprograms.launch_wrapper`, on every host, local ones too:

* **Exact exit status.** mpirun reports a child killed by signal N as status 128+N, which a
  node exiting 137 also gives. The wrapper reports the node's own status (or minus the signal)
  on its last stderr line, and exits 0, so mpirun adds no "process returned a non-zero exit
  code" banner after it (that path also costs Open MPI about two seconds per failed job).
* **No process left behind.** mpirun forwards its stdin to the one process it starts; the
  wrapper reads the job's environment and token from it, then watches it. A SIGKILLed mpirun
  leaves its child running (Open MPI's own kill never happens), but its stdin ends, so the
  wrapper kills the job's process group; on other hosts ``orted`` loses its link to mpirun and
  the same happens. The token therefore never sits in mpirun's environment or on a command
  line, and no ``-x NAME`` forwarding is needed: the wrapper sets the node's variables itself.

Kill timing. The scheduler's kill sends SIGTERM to mpirun, which asks Open MPI to tear the job
down: it sends SIGTERM to the wrapper, and SIGKILL ``odls_base_sigkill_timeout`` seconds later.
The wrapper, on SIGTERM, sends SIGTERM to the node's process group and SIGKILL after
``kill_grace`` seconds, so the node is gone ``kill_grace`` seconds after the kill whatever it
ignores. Open MPI must not SIGKILL the wrapper before that, so the backend sets
``odls_base_sigkill_timeout`` to the next whole second above ``kill_grace``; mpirun then exits
about one second after that timeout (measured with Open MPI 4.1), and only if it has not done so
``KILL_MARGIN`` seconds later is mpirun itself SIGKILLed by the local process launcher.

Session folders. Each mpirun keeps its Open MPI session folder in a folder of its own under a
private (0700) folder that the backend makes in ``open`` and removes in ``close``
(``orte_local_tmpdir_base``). Concurrent mpiruns sharing the default ``/tmp/ompi.HOST.UID``
race: one that exits removes the empty folder while another is creating its own inside it, and
the second fails with "A call to mkdir was unable to create the desired directory" (seen here
once in a few hundred launches; Open MPI issue #8510). The ``orted`` daemons on other hosts
still share their host's default folder: there the race remains possible, rarely, and shows as a
transport error.

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import shlex
import shutil
import tempfile

from lofarexec import (
    Backend,
    BackendRegistry,
    JobHandle,
    LaunchRequest,
    NothingToKill,
    Outcome,
    hookimpl,
)
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import (
    ProcessLauncher,
    RemoteLaunch,
    check_shared_settings,
    host_name_problem,
    kill_grace_field,
    remote_launch,
    remote_python_field,
)

#: Seconds that mpirun gets, after Open MPI's own SIGKILL of the job, to exit by itself.
KILL_MARGIN = 2.0
#: A character that Open MPI's ``--host`` gives a meaning of its own (slot counts); its other
#: one, ',' (lists), is in no host name.
_HOST_SYNTAX = ":"
#: Open MPI puts Unix sockets in the session folder, whose paths are limited to 107 bytes.
_MAX_SESSION_ROOT = 48


@dataclasses.dataclass(frozen=True)
class MpirunSettings:
    """``[mpirun]`` section of ``pipeline.cfg``."""

    mpirun: str = dataclasses.field(
        default="mpirun", metadata={"help": "the Open MPI launcher program"})
    arguments: str = dataclasses.field(
        default="", metadata={"help": "extra mpirun arguments, split like a shell would, "
                                      "placed before '-np 1 --host HOST'"})
    allow_run_as_root: bool | None = dataclasses.field(
        default=None, metadata={"help": "pass --allow-run-as-root (default: when running as "
                                        "root, which Open MPI otherwise refuses)"})
    oversubscribe: bool = dataclasses.field(
        default=True, metadata={"help": "pass --oversubscribe, so more jobs than a host has "
                                        "cores may run there (the scheduler limits them)"})
    bind_to: str = dataclasses.field(
        default="none", metadata={"help": "--bind-to policy; Open MPI's default pins every "
                                          "one-process job to the first core"})
    rsh_agent: str | None = dataclasses.field(
        default=None, metadata={"help": "how mpirun reaches other hosts (Open MPI's "
                                        "plm_rsh_agent), e.g. 'ssh -F /path/ssh_config'; Open "
                                        "MPI splits it at spaces itself: no quotes"})
    remote_python: str = remote_python_field("the launch wrapper")
    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)
        shlex.split(self.arguments)  # fails early on unbalanced quotes
        if self.rsh_agent is not None and any(quote in self.rsh_agent for quote in "'\"\\"):
            raise ValueError("rsh_agent: Open MPI splits it at spaces and does not understand "
                             "quotes or backslashes; use a path without spaces")
        if not self.bind_to.strip():
            raise ValueError("bind_to must name a policy, e.g. 'none'")

    @property
    def sigkill_timeout(self) -> int:
        """Open MPI's wait before it SIGKILLs the wrapper: whole seconds, above ``kill_grace``."""
        return math.floor(self.kill_grace) + 1

    @property
    def launcher_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL for mpirun itself."""
        return self.sigkill_timeout + KILL_MARGIN


class MpirunBackend(Backend):
    """Runs each node script through its own ``mpirun -np 1`` on the job's host."""

    name = "mpirun"
    audit = True  # the end-of-run audit's command is one more mpirun -np 1 on each host
    Settings = MpirunSettings

    def open(self) -> None:
        self._session_root = _session_root()
        self._session_numbers = itertools.count()
        self._options = self.mpirun_options()
        self._launcher = ProcessLauncher(kill_grace=self.settings.launcher_grace,
                                         name="mpirun-jobs")
        self._launcher.start()

    def mpirun_options(self) -> list[str]:
        """The mpirun command up to (not including) ``-np 1 --host HOST``."""
        settings = self.settings
        argv = [settings.mpirun]
        root = settings.allow_run_as_root
        if root or (root is None and os.geteuid() == 0):
            argv.append("--allow-run-as-root")
        if settings.oversubscribe:
            argv.append("--oversubscribe")
        argv += ["--bind-to", settings.bind_to,
                 "--mca", "odls_base_sigkill_timeout", str(settings.sigkill_timeout)]
        if settings.rsh_agent:
            argv += ["--mca", "plm_rsh_agent", settings.rsh_agent]
        return argv + shlex.split(settings.arguments)

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        problem = host_name_problem(request.host, also_refused=_HOST_SYNTAX)
        if problem is not None:
            report(Outcome(None, transport_error=problem))
            return NothingToKill()
        launch = remote_launch(request, python=self.settings.remote_python,
                               kill_grace=self.settings.kill_grace)

        session = os.path.join(self._session_root, str(next(self._session_numbers)))

        def finished(seen: Outcome) -> None:
            shutil.rmtree(session, ignore_errors=True)  # left behind by a SIGKILLed mpirun
            report(_verdict(launch, seen))

        argv = self.job_argv(self._options, session, request.host, launch)
        return self._launcher.launch(argv, finished, stdin_data=launch.stdin,
                                     keep_stdin_open=True)

    def job_argv(self, options: list[str], session: str, host: str,
                 launch: RemoteLaunch) -> list[str]:
        """One job's mpirun command: ``options`` (:meth:`mpirun_options`), its session folder,
        its host and the launch wrapper's argv."""
        return [*options, "--mca", "orte_local_tmpdir_base", session,
                "-np", "1", "--host", host, "--", *launch.argv]

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The mpirun command of ``request``; its session folder is made at the start."""
        launch = remote_launch(request, python=self.settings.remote_python,
                               kill_grace=self.settings.kill_grace)
        return LaunchPreview(
            tuple(self.job_argv(self.mpirun_options(), "<session folder>", request.host, launch)),
            note="environment, token and status marker on mpirun's stdin")

    def close(self) -> None:
        launcher = getattr(self, "_launcher", None)
        if launcher is not None:
            launcher.close()
            shutil.rmtree(self._session_root, ignore_errors=True)
            self._launcher = None  # type: ignore[assignment]


def _session_root() -> str:
    """A private (0700) folder for the jobs' session folders, with a short enough path."""
    directory = tempfile.mkdtemp(prefix="lofarexec-mpirun-")
    if len(directory) > _MAX_SESSION_ROOT:
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix="lofarexec-mpirun-", dir="/tmp")
    return directory


def _verdict(launch: RemoteLaunch, seen: Outcome) -> Outcome:
    """The node's outcome; for a launch failure, mpirun's own words without its banners."""
    if seen.transport_error is not None:  # mpirun itself could not be started
        return seen
    node = launch.node_outcome(seen.output, seen.errors)
    if node is not None:
        return node  # the node's status, or the wrapper's word that it could not start it
    lines = [line.strip() for line in seen.errors.splitlines()]
    words = [line for line in lines if line and line.strip("-")]
    reason = " | ".join(words[:3]) or "no output"
    status = (f"signal {-seen.returncode}" if seen.returncode is not None and seen.returncode < 0
              else f"status {seen.returncode}")
    return Outcome(None, transport_error=f"mpirun failed ({status}): {reason}",
                   output=seen.output, errors=seen.errors)


@hookimpl
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    registry.add(MpirunBackend)


__all__ = ["MpirunBackend", "MpirunSettings"]

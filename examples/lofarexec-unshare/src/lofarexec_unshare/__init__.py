"""The ``unshare`` backend: each job on this machine, in Linux namespaces of its own.

A worked example of an out-of-tree lofarexec backend. It imports only :mod:`lofarexec`,
:mod:`lofarexec.errors` and the backend toolkit :mod:`lofarexec.transport`, and is found through
its ``lofarexec`` entry point (``pyproject.toml``); nothing in lofarexec knows about it.

Each job's argv is ``unshare --pid --kill-child --mount-proc ... /bin/sh -c 'hostname HOST &&
exec WRAPPER'``: the launch wrapper of :func:`lofarexec.transport.start_through_wrapper` is the
first process of the job's PID namespace, so when it ends (the node ended, or the job was killed)
the kernel kills whatever the node left in the namespace. The wrapper gets the job's environment
and token on its stdin, never on a command line, reports the node's exact exit status, and kills
the node when it is sent SIGTERM or its stdin closes; :class:`~lofarexec.transport.ProcessLauncher`
sends that SIGTERM to the whole ``unshare`` process group, and SIGKILL ``kill_grace`` +
:data:`KILL_MARGIN` seconds later.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
from typing import Any

from lofarexec import Backend, BackendRegistry, JobHandle, LaunchRequest, hookimpl
from lofarexec.backend import Report
from lofarexec.errors import BackendError
from lofarexec.transport import (
    ProcessLauncher,
    check_shared_settings,
    kill_grace_field,
    remote_python_field,
    start_through_wrapper,
)

__all__ = ["NAMESPACES", "UnshareBackend", "UnshareSettings"]
__version__ = "0.1.0"

#: The namespaces a job may get, with the ``unshare`` options that make each. ``net`` is not
#: among them: the node must reach the log receiver on this machine's loopback.
NAMESPACES = {
    "pid": ("--pid", "--kill-child", "--mount-proc"),  # its own /proc, so ps sees the job only
    "mount": ("--mount",),
    "ipc": ("--ipc",),
    "uts": ("--uts",),
    "cgroup": ("--cgroup",),
    "user": ("--user",),
}
#: Seconds the wrapper gets, after it has SIGKILLed the node, before the group is SIGKILLed.
KILL_MARGIN = 1.0


def _field(default: Any, help_text: str) -> Any:
    """A settings field with its help text (what ``lofarexec backends -v`` prints)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class UnshareSettings:
    """``[unshare]`` section of ``pipeline.cfg``."""

    namespaces: tuple[str, ...] = _field(
        ("pid", "mount", "ipc", "uts"),
        "the namespaces each job gets, comma separated: " + ", ".join(NAMESPACES)
        + " (not net: the node must reach the log receiver)")
    set_hostname: bool = _field(
        True, "set each job's host name (uname -n) to the host it was scheduled on; "
              "needs the uts namespace")
    map_root_user: bool = _field(
        False, "also a user namespace with you as root in it, to run without root where "
               "unprivileged user namespaces are allowed")
    unshare: str = _field("unshare", "the unshare program (util-linux)")
    remote_python: str = remote_python_field("the launch wrapper inside the namespaces")
    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)
        unknown = [name for name in self.namespaces if name not in NAMESPACES]
        if "net" in unknown:
            raise ValueError("namespaces: net is not possible: the node must reach the log "
                             "receiver on this machine's loopback")
        if unknown or not self.namespaces:
            raise ValueError(f"namespaces: give some of {', '.join(NAMESPACES)}"
                             + (f" (not {', '.join(unknown)})" if unknown else ""))
        if self.set_hostname and "uts" not in self.namespaces:
            raise ValueError("set_hostname needs the uts namespace: add uts to namespaces, "
                             "or set set_hostname = no")

    def options(self) -> list[str]:
        """The ``unshare`` options for the chosen namespaces."""
        words = [word for name in self.namespaces for word in NAMESPACES[name]]
        return words + (["--map-root-user"] if self.map_root_user else [])


class UnshareBackend(Backend):
    """Runs each node script on this machine in namespaces of its own (PID, mount, IPC, UTS)."""

    name = "unshare"
    Settings = UnshareSettings
    local_only = True  # nodes run here: the log receiver need only listen on loopback

    def open(self) -> None:
        """Find ``unshare`` and try the namespaces once, so a machine that cannot make them
        fails the run before any job, in one line saying what to do."""
        settings = self.settings
        program = shutil.which(settings.unshare)
        if program is None:
            raise BackendError(f"[unshare] unshare = {settings.unshare}: no such program; "
                               "install util-linux or give the program's path")
        self._prefix = [program, *settings.options(), "--", "/bin/sh", "-c"]
        probe = subprocess.run([*self._prefix, self._shell("probe", "true")],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            said = (probe.stderr.strip().splitlines() or ["no message"])[-1]
            raise BackendError(f"unshare cannot make the namespaces "
                               f"{', '.join(settings.namespaces)} here ({said}); run as root "
                               "or set map_root_user = yes under [unshare]")
        self._launcher = ProcessLauncher(kill_grace=settings.kill_grace + KILL_MARGIN,
                                         name="unshare-jobs")
        self._launcher.start()

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        return start_through_wrapper(
            self._launcher, request, report,
            lambda command: [*self._prefix, self._shell(request.host, command)],
            python=self.settings.remote_python, kill_grace=self.settings.kill_grace)

    def _shell(self, host: str, command: str) -> str:
        """The shell line run inside the namespaces: name the host, then become ``command``."""
        if self.settings.set_hostname:
            return f"hostname {shlex.quote(host)} && exec {command}"
        return f"exec {command}"

    def close(self) -> None:
        launcher = getattr(self, "_launcher", None)
        if launcher is not None:
            self._launcher = None
            launcher.close()


@hookimpl
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    registry.add(UnshareBackend)

"""The ``ssh`` backend: the OpenSSH client, connections reused, one agent per host.

With ``launch = agent`` (the default) one ``ssh`` process per host runs the host agent::

    ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes ... -- HOST 'python3 -c <agent>'

and every job of that host is a start frame on its stdin (:mod:`lofarexec.transport.agent`, the
agent in :mod:`lofarexec.hostprograms.host_agent`): no process here, no session, shell or
Python start-up there per job. With ``launch = process`` each job runs as its own::

    ssh ... -- HOST 'python3 -c <launch wrapper> <node argv, quoted once>'

with the job's environment, token and status marker written to ssh's stdin, which is held open
for the job's lifetime (see :mod:`lofarexec.hostprograms.launch_wrapper`). Either way: never a tty
(it would merge stderr into stdout and echo stdin), never a prompt (``BatchMode``), and the job's
process group on the host dies when its kill arrives, or when the link to the control node ends.

A host's agent is one plain ``ssh`` process (two descriptors here, no ControlMaster: one session
carries all of the host's jobs), served with every other host's by one thread
(:class:`~lofarexec.transport.AgentPool`); the rare orphan kill or status read after an agent
died is a short ``ssh`` of its own. With ``launch = process``, connections are shared per host
through an OpenSSH ControlMaster socket in a private folder that ``close()`` tears down (every
host's master at once), so only a host's first session pays for the handshake.

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable

from lofarexec import Backend, JobHandle, LaunchRequest, hookimpl
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import (
    KILL_CONFIRM,
    AgentPool,
    ProcessLauncher,
    alive_interval_field,
    check_shared_settings,
    kill_grace_field,
    remote_launch,
    remote_python_field,
    start_through_wrapper,
)

_HOST_KEY_POLICIES = ("yes", "accept-new")
_LAUNCH_MODES = ("agent", "process")
#: Unix socket paths are limited to 107 bytes; leave room for "/<number>".
_MAX_CONTROL_DIRECTORY = 90
#: ``ssh -O exit`` processes run together when closing.
_MASTERS_AT_ONCE = 64


@dataclasses.dataclass(frozen=True)
class SshSettings:
    """``[ssh]`` section of ``pipeline.cfg``."""

    ssh: str = dataclasses.field(default="ssh", metadata={"help": "the ssh client program"})
    options: str = dataclasses.field(
        default="", metadata={"help": "extra ssh options, split like a shell would"})
    user: str | None = dataclasses.field(default=None, metadata={"help": "remote user (-l)"})
    port: int | None = dataclasses.field(default=None, metadata={"help": "remote port (-p)"})
    identity_file: str | None = dataclasses.field(
        default=None, metadata={"help": "private key (-i), offered alone"})
    config_file: str | None = dataclasses.field(
        default=None, metadata={"help": "ssh client config file (-F)"})
    connect_timeout: int = dataclasses.field(
        default=10, metadata={"help": "seconds to wait for a connection"})
    alive_interval: int = alive_interval_field(
        "seconds between keepalives; a host silent for three intervals is a dropped "
        "connection, and a host agent that hears nothing for four kills its jobs")
    host_key_policy: str = dataclasses.field(
        default="yes", metadata={"help": "'yes': only known host keys; 'accept-new': also "
                                         "record keys of hosts never seen"})
    launch: str = dataclasses.field(
        default="agent", metadata={"help": "'agent': one ssh process per host runs the host "
                                           "agent, which starts the host's jobs; 'process': one "
                                           "ssh process, remote shell and launch wrapper per "
                                           "job"})
    reuse_connections: bool = dataclasses.field(
        default=True, metadata={"help": "share one connection per host (ControlMaster) "
                                        "between the ssh processes of launch = process (an "
                                        "agent needs none: it is one session per host)"})
    remote_python: str = remote_python_field("the host agent or launch wrapper")
    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)
        if self.launch not in _LAUNCH_MODES:
            raise ValueError(f"launch must be one of {', '.join(_LAUNCH_MODES)}")
        if self.host_key_policy not in _HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {', '.join(_HOST_KEY_POLICIES)}")
        shlex.split(self.options)  # fails early on unbalanced quotes
        if self.config_file and self.config_file != "none":  # -F none: no config file at all
            _check_readable(self.config_file)


def _check_readable(config_file: str) -> None:
    """Fail at configuration time, naming the key, when ssh could not read its ``-F`` file
    (ssh would fail every job with it, one at a time)."""
    try:
        with open(config_file, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"config_file {config_file!r} cannot be read ({exc.strerror}): give "
                         "the path of an ssh client config file, or remove the key") from None


class SshBackend(Backend):
    """Runs each node script through the OpenSSH client, sharing one connection per host."""

    name = "ssh"
    audit = True  # the end-of-run audit looks for leftover processes through start
    Settings = SshSettings

    def open(self) -> None:
        self._control_directory = (
            _control_directory() if self._shares_connections() else None
        )
        self._hosts_used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._agents = self._agent_pool(lambda host: self._ssh_argv(host, None))
        self._launcher = ProcessLauncher(kill_grace=self.settings.kill_grace, name="ssh-jobs")
        self._launcher.start()

    def _agent_pool(self, ssh_argv: Callable[[str], list[str]]) -> AgentPool:
        return AgentPool(
            lambda host, command: [*ssh_argv(host), command], program=self.settings.ssh,
            python=self.settings.remote_python, kill_grace=self.settings.kill_grace,
            alive_interval=self.settings.alive_interval,
            orphan_timeout=self.settings.connect_timeout + KILL_CONFIRM)

    def _shares_connections(self) -> bool:
        """ControlMaster sockets: for the ssh processes of ``launch = process`` only."""
        return self.settings.reuse_connections and self.settings.launch == "process"

    def ssh_argv(self, host: str) -> list[str]:
        """The ssh command up to and including the destination."""
        control_path = None
        if self._control_directory:
            # One socket per host, named by a small number: a socket path must stay under 108
            # bytes, which OpenSSH's own %C (40 characters) can break under a long TMPDIR.
            with self._lock:
                number = self._hosts_used.setdefault(host, len(self._hosts_used))
            control_path = f"{self._control_directory}/{number}"
        return self._ssh_argv(host, control_path)

    def _ssh_argv(self, host: str, control_path: str | None) -> list[str]:
        settings = self.settings
        argv = [settings.ssh, "-T", "-o", "BatchMode=yes",
                "-o", f"StrictHostKeyChecking={settings.host_key_policy}",
                "-o", f"ConnectTimeout={settings.connect_timeout}"]
        if settings.alive_interval:
            argv += ["-o", f"ServerAliveInterval={settings.alive_interval}",
                     "-o", "ServerAliveCountMax=3"]
        if settings.config_file:
            argv += ["-F", settings.config_file]
        if settings.user:
            argv += ["-l", settings.user]
        if settings.port:
            argv += ["-p", str(settings.port)]
        if settings.identity_file:
            argv += ["-i", settings.identity_file, "-o", "IdentitiesOnly=yes"]
        if control_path:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}",
                     "-o", "ControlPersist=60"]
        # Otherwise never become a master of the user's own (``ControlMaster auto`` with
        # ControlPersist in ~/.ssh/config would leave a background ssh per host after the run);
        # a master the user already has is still used. After ``options``, which may ask for one.
        no_master = [] if control_path else ["-o", "ControlMaster=no"]
        return [*argv, *shlex.split(settings.options), *no_master, "--", host]

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        if self.settings.launch == "process":
            return start_through_wrapper(
                self._launcher, request, report, self._job_ssh(self.ssh_argv, request.host),
                python=self.settings.remote_python, kill_grace=self.settings.kill_grace)
        return self._agents.start(request, report)

    @staticmethod
    def _job_ssh(ssh_argv: Callable[[str], list[str]], host: str) -> Callable[[str], list[str]]:
        """The ssh argv of one job (``launch = process``), given its remote command."""
        return lambda command: [*ssh_argv(host), command]

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The ssh command a job (``launch = process``) or its host's agent would run."""
        socket = "<control socket>" if self._shares_connections() else None
        ssh_argv = lambda host: self._ssh_argv(host, socket)  # noqa: E731
        if self.settings.launch == "process":
            launch = remote_launch(request, python=self.settings.remote_python,
                                   kill_grace=self.settings.kill_grace)
            return LaunchPreview(tuple(self._job_ssh(ssh_argv, request.host)(launch.command)),
                                 note="environment, token and status marker on ssh's stdin")
        return LaunchPreview(tuple(self._agent_pool(ssh_argv).agent_argv(request.host)),
                             per_host=True,
                             note="the job's argv, environment and token go to the agent "
                                  "as a start frame on ssh's stdin")

    def close(self) -> None:
        launcher = getattr(self, "_launcher", None)
        if launcher is None:
            return
        self._agents.close()
        launcher.close()
        if self._control_directory:
            self._stop_masters(sorted(self._hosts_used))
            shutil.rmtree(self._control_directory, ignore_errors=True)
        self._launcher = None  # type: ignore[assignment]

    def _stop_masters(self, hosts: list[str]) -> None:
        """Tear down the shared connections of ``hosts``, all at once (a host without one
        costs nothing); at most :data:`_MASTERS_AT_ONCE` ``ssh -O exit`` run together, so that
        a thousand hosts do not take a thousand processes and their descriptors."""
        running: list[subprocess.Popen[bytes]] = []
        for host in hosts:
            if len(running) >= _MASTERS_AT_ONCE:
                _wait_quietly(running.pop(0))
            argv = self.ssh_argv(host)
            argv[1:1] = ["-O", "exit"]
            try:
                running.append(subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            except OSError:
                pass
        for process in running:
            _wait_quietly(process)


def _wait_quietly(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _control_directory() -> str:
    """A private (0700) folder for the ControlMaster sockets, with a short enough path."""
    directory = tempfile.mkdtemp(prefix="lofarexec-ssh-")
    if len(directory) > _MAX_CONTROL_DIRECTORY:
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix="lofarexec-ssh-", dir="/tmp")
    return directory


@hookimpl
def lofarexec_register_backends(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(SshBackend)


__all__ = ["SshBackend", "SshSettings"]

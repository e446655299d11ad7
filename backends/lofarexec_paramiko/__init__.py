"""The ``paramiko`` backend: SSH in-process, one shared connection per host.

For sites without an OpenSSH client, or with thousands of jobs per host: no process is started
on the control node per job, and a host's jobs share its connection::

    scheduler --start(request)--> ParamikoBackend --> HostPool[host] (its own lock)
                                                        |  agent mode: the live connection;
                                                        |  channel mode: the first one with
                                                        v  fewer than [paramiko] sessions jobs
                                       Connection (+ paramiko's transport thread)
                                         set-up: resolve the host's ssh config; TCP
                                           (TCP_NODELAY) and key exchange waited for on the
                                           hub (.dial); a set-up thread: host key -> auth;
                                           agent mode: one channel runs the host agent
                                         the backend's one hub thread (.hub), for all hosts:
                                           agent mode: per job a start frame, its output and
                                           end framed back; channel mode: per job a channel
                                           (opened by a set-up thread) -> exec wrapper ->
                                           stdin header; output -> tails -> report(Outcome)

``launch = agent`` (the default) starts :mod:`lofarexec.hostprograms.host_agent` once per connection
and asks it to start each job (:mod:`.agent`): a job then costs a ``posix_spawn`` on the host, not
an SSH session, a remote shell and a Python start-up. ``launch = channel`` runs each job as the
``ssh`` backend does (:func:`lofarexec.transport.remote_launch`: the launch wrapper, the node's
argv quoted once; environment, token and status marker on stdin, which stays open for the
job's life) in a session channel of its own. Either way the guarantees are the wrapper's:
``start()`` never blocks (connecting and all channel I/O happen in the backend's own threads);
a kill (a kill frame, or EOF on the job's stdin) kills the job's process group on the host; a
closed channel or a dropped connection ends the agent's or wrapper's stdin as well, so nothing
outlives its connection. Host names are resolved through the OpenSSH client config
(``config_file``) like ``ssh`` does; host keys are checked against the system and user
``known_hosts`` files (``host_key_policy``), and nothing is ever prompted for. Every failure
reaches the scheduler as an ``Outcome`` whose ``transport_error`` is one line naming the host;
paramiko's exceptions are translated into :mod:`lofarexec.errors` where they occur
(:func:`.connect.translate`).

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport` (plus paramiko).
"""

from __future__ import annotations

import functools
import getpass
import logging
import threading

from lofarexec import (
    Backend,
    BackendRegistry,
    JobHandle,
    LaunchRequest,
    LofarexecError,
    NothingToKill,
    Outcome,
    hookimpl,
)
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import Pinger, RemoteLaunch, host_name_problem, remote_launch

from .agent import agent_remote_command
from .connect import KeyCache
from .hosts import KnownHosts, load_ssh_config, resolve_target
from .hub import Hub
from .jobs import Job
from .pool import ChannelJobHandle, HostPool, close_pools
from .settings import ParamikoSettings


class ParamikoBackend(Backend):
    """Runs each node script in an SSH channel of a connection shared by its host's jobs."""

    name = "paramiko"
    audit = True  # the end-of-run audit looks for leftover processes through start
    Settings = ParamikoSettings

    def open(self) -> None:
        """Read the ssh config once for the run; connections are opened by the first job of
        each host, in set-up threads, and served by one hub thread (:mod:`.hub`)."""
        # paramiko logs transport failures itself (at ERROR, with tracebacks); this backend
        # reports each one as the job's one-line reason instead, so keep paramiko's quiet.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        self._lock = threading.Lock()
        self._pools: dict[str, HostPool] = {}
        self._closed = False
        self._known_hosts = KnownHosts(self.settings.host_key_policy)
        self._keys = KeyCache()
        self._local_user = getpass.getuser()  # now: later, /etc/passwd may not open (no fds)
        self._hub = Hub()  # closed by close(), which is called even if the next line raises
        self._ssh_config = load_ssh_config(self.settings)

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        problem = host_name_problem(request.host)
        if problem is not None:
            report(Outcome(None, transport_error=problem))
            return NothingToKill()
        try:
            pool = self._pool(request.host)
        except LofarexecError as exc:  # the backend is closed: this job fails, saying so
            report(Outcome(None, transport_error=" ".join(str(exc).split())))
            return NothingToKill()
        job = Job(request, self._remote_launch(request), report)
        pool.submit(job)
        return ChannelJobHandle(pool, job)

    def _remote_launch(self, request: LaunchRequest) -> RemoteLaunch | None:
        """The launch wrapper's command and stdin (``launch = channel``); None for an agent."""
        if self.settings.launch == "agent":
            return None
        return remote_launch(request, python=self.settings.remote_python,
                             kill_grace=self.settings.kill_grace)

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The command line the job's channel (or its host's agent channel) would run, and
        where the connection would go, from the ssh config: nothing is connected."""
        target = resolve_target(request.host, self.settings, load_ssh_config(self.settings),
                                getpass.getuser())
        where = (f"{target.user}@{target.hostname}:{target.port} (an SSH exec request; no "
                 "local process)")
        launch = self._remote_launch(request)
        if launch is None:
            command = agent_remote_command(self.settings.remote_python,
                                           Pinger(self.settings.alive_interval), "<status file>")
            return LaunchPreview((), command=command, where=where, per_host=True,
                                 note="the job's argv, environment and token go to the agent "
                                      "as a start frame on its channel")
        return LaunchPreview((), command=launch.command, where=where,
                             note="environment, token and status marker on the channel's stdin")

    def close(self) -> None:
        """Kill what still runs, close every connection and join every thread; safe twice."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            pools, self._pools = list(self._pools.values()), {}
            self._closed = True
        close_pools(pools)  # every host told to stop before any is waited for
        hub = getattr(self, "_hub", None)
        if hub is not None:  # None: open() failed before it was made
            hub.close()

    def connection_counts(self) -> dict[str, int]:
        """How many connections each host was given so far (a host's reconnects included)."""
        with self._lock:
            return {host: pool.connection_count() for host, pool in self._pools.items()}

    def _pool(self, host: str) -> HostPool:
        with self._lock:
            if self._closed:
                raise LofarexecError(f"{host}: the paramiko backend is closed")
            pool = self._pools.get(host)
            if pool is None:  # the host is resolved by its first connection's set-up thread
                resolve = functools.partial(resolve_target, host, self.settings,
                                            self._ssh_config, self._local_user)
                pool = self._pools[host] = HostPool(resolve, self.settings, self._known_hosts,
                                                    self._keys, self._hub, name=host)
            return pool


@hookimpl
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    registry.add(ParamikoBackend)


__all__ = ["ParamikoBackend", "ParamikoSettings"]

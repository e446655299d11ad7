"""One host agent per host for a transport that reaches hosts through a local program.

:class:`AgentPool` makes an :class:`~lofarexec.transport.agent.AgentClient` for a host's first
job and again after its agent ended; when an agent ended while its host could still be reached,
it kills the jobs the agent left running there through the same program. Every client of a
pool is served by the pool's one :class:`~lofarexec.transport.agent_loop.AgentLoop` (threads do
not grow with hosts); its local program is started by a worker of that loop, once the
process's :func:`~lofarexec.transport.fdbudget.descriptor_budget` grants the host a slot for
its two descriptors (hosts beyond the budget wait, their jobs queued, while idle agents give theirs
back); and :meth:`AgentPool.close` ends every host's agent at once.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from lofarexec.backend import JobHandle, LaunchRequest, NothingToKill, Outcome, Report
from lofarexec.hostnames import host_name_problem
from lofarexec.transport.agent import KILL_CONFIRM, AgentClient
from lofarexec.transport.agent_frames import Pinger
from lofarexec.transport.agent_loop import AgentLoop
from lofarexec.transport.fdbudget import DescriptorBudget, descriptor_budget
from lofarexec.transport.orphans import fetch_statuses, kill_orphans, status_marker
from lofarexec.transport.wrapper import agent_command

#: Descriptors a host's agent holds here: a socket for its local program's stdin and stdout,
#: a pipe for its stderr.
AGENT_DESCRIPTORS = 2


class AgentPool:
    """One :class:`AgentClient` per host for a transport that reaches hosts through a local
    program: made by the first job of a host, and made again when the last one ended.

    ``launcher_argv(host, remote_command)`` is the local program's argv that runs
    ``remote_command`` (one shell command line) on ``host``; ``program`` names that program in
    errors. The agents' orphans (jobs left running by an agent killed on its host) are killed by
    running :func:`~lofarexec.transport.orphans.orphan_kill_command` the same way, within
    ``orphan_timeout`` seconds (:func:`~lofarexec.transport.orphans.kill_orphans`).
    ``budget``: the descriptor budget hosts take slots of (default: the process's).
    """

    def __init__(self, launcher_argv: Callable[[str, str], list[str]], *, program: str,
                 python: str, kill_grace: float, alive_interval: float,
                 orphan_timeout: float, budget: DescriptorBudget | None = None) -> None:
        self._launcher_argv = launcher_argv
        self._program = program
        self._python = python
        self._kill_grace = kill_grace
        self._alive_interval = alive_interval
        self._orphan_timeout = orphan_timeout
        self._lock = threading.Lock()
        self._agents: dict[str, AgentClient] = {}
        self._ended: list[AgentClient] = []
        self._budget = budget
        self._loop: AgentLoop | None = None  # made with the first agent
        self._closed = False

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        """Start ``request`` through its host's agent; a host name that could pass for an
        option, or a program that cannot be started, is the job's transport error."""
        problem = host_name_problem(request.host)
        if problem is not None:
            report(Outcome(None, transport_error=problem))
            return NothingToKill()
        while True:  # an agent may stop taking jobs between the look-up and the offer
            agent = self._agent(request.host)
            if agent is None:
                report(Outcome(None, transport_error=f"{request.host}: the backend is closing"))
                return NothingToKill()
            handle = agent.offer(request, report)
            if handle is not None:
                return handle

    def close(self) -> None:
        """Close every agent at once (their running jobs are killed, all within one grace
        period), then the loop."""
        with self._lock:
            agents = [*self._agents.values(), *self._ended]
            self._agents, self._ended = {}, []
            loop, self._loop = self._loop, None
            self._closed = True
        for agent in agents:
            agent.shutdown()
        deadline = time.monotonic() + self._kill_grace + KILL_CONFIRM + 5.0
        late = [agent for agent in agents
                if not agent.wait_finished(max(0.0, deadline - time.monotonic()))]
        for agent in late:  # the agent does not answer: end its link from here
            agent.force_end()
        for agent in late:
            agent.wait_finished()
        if loop is not None:
            loop.close()

    def agent_argv(self, host: str, pinger: Pinger | None = None,
                   marker: str = "<status file>") -> list[str]:
        """The local program's argv that starts the agent of ``host`` (also for a dry run,
        without a ``pinger``: the configured ping interval's).

        .. versionadded:: 0.1
        """
        pinger = pinger or Pinger(self._alive_interval)
        return self._launcher_argv(host, agent_command(self._python, pinger.silence_limit,
                                                       marker))

    def _agent(self, host: str) -> AgentClient | None:
        """The host's agent, made (and its slot requested) if it has none that takes jobs;
        None once the pool is closed."""
        with self._lock:
            if self._closed:
                return None
            agent = self._agents.get(host)
            if agent is not None and agent.usable():
                return agent
            if agent is not None:
                self._ended = [old for old in self._ended if not old.finished()]
                self._ended.append(agent)
            if self._loop is None:
                self._loop = AgentLoop(name="agents")
            if self._budget is None:
                self._budget = descriptor_budget()
            loop, pinger, marker = self._loop, Pinger(self._alive_interval), status_marker()
            slot = self._budget.slot(AGENT_DESCRIPTORS)
            agent = self._agents[host] = AgentClient(
                host, self.agent_argv(host, pinger, marker), kill_grace=self._kill_grace,
                pinger=pinger, kill_orphans=lambda pids: self._kill_orphans(host, pids),
                fetch_statuses=lambda numbers: self._fetch_statuses(host, marker, numbers),
                loop=loop, program=self._program, on_finished=slot.release)
        slot.request(granted=lambda: loop.chore(agent.launch), reclaim=agent.release_when_idle)
        return agent

    def _fetch_statuses(self, host: str, marker: str, numbers: list[int]) -> dict[int, int]:
        """The link to the agent of ``host`` ended with jobs running: the statuses it recorded
        there, read through a new run of the local program."""

        def run(command: str, seconds: float) -> str:
            try:
                done = subprocess.run(
                    self._launcher_argv(host, command), stdin=subprocess.DEVNULL,
                    capture_output=True, check=False, timeout=seconds)
            except subprocess.TimeoutExpired as exc:
                raise OSError(str(exc)) from None
            if done.returncode != 0:
                said = done.stderr.decode("utf-8", "replace").strip()
                raise OSError(said or f"status {done.returncode}")
            return done.stdout.decode("ascii", "replace")

        return fetch_statuses(host, marker, numbers, run, timeout=self._orphan_timeout)

    def _kill_orphans(self, host: str, pids: list[int]) -> bool:
        """The agent of ``host`` ended but the host may still be reachable: kill the process
        groups of the jobs it ran through the local program."""

        def run(command: str, seconds: float) -> str | None:
            try:
                done = subprocess.run(
                    self._launcher_argv(host, command), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                    timeout=seconds)
            except subprocess.TimeoutExpired as exc:
                return str(exc)
            if done.returncode == 0:
                return None
            return done.stderr.decode("utf-8", "replace").strip() or f"status {done.returncode}"

        return kill_orphans(host, pids, self._kill_grace, run, timeout=self._orphan_timeout)

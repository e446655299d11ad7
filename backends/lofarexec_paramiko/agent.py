"""The control-node end of a host agent on a paramiko channel: one channel, many jobs.

The agent is :mod:`lofarexec.hostprograms.host_agent`.

In ``launch = agent`` mode each connection opens one session channel that runs the agent, and
the backend's hub thread (:mod:`.hub`) sends it start and kill requests and reads the jobs'
output and ends back, all framed on that channel (the frame format is in the agent's
docstring). A job then costs a few hundred bytes each way instead of an SSH session, a remote
shell and a Python start-up on the host.

Only the hub thread calls into a running :class:`AgentLink` (paramiko's own thread fills the
channel's buffers); nothing here blocks for long: requests are small, and the agent reads its
stdin even while its output waits, so ``sendall`` always finds room soon.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import paramiko

from lofarexec.backend import Outcome
from lofarexec.errors import BackendError
from lofarexec.transport import (
    KILL_CONFIRM,
    PING,
    FrameReader,
    Pinger,
    agent_command,
    encode_kill,
    encode_start,
    fetch_statuses,
    kill_orphans,
    last_lines,
    stalled_note,
    status_marker,
    take_frames,
)

from .connect import (
    CHANNEL_ERRORS,
    close_transport,
    connect,
    describe,
    lost,
    translate,
    watch_channel,
)

if TYPE_CHECKING:
    from .hosts import Target
    from .jobs import Job
    from .pool import HostPool
    from .settings import ParamikoSettings

_CHUNK = 65536
_READS_PER_TURN = 32  # then the connection's kills and new jobs get a turn
_STDERR_KEPT = 4096


class AgentLink:
    """One running agent: sends requests, decodes its frames into its jobs' ends, remembers
    how it ended; ``failure`` says why the link must end from here (the agent's output is
    garbled, or it was silent for its silence limit)."""

    def __init__(self, channel: paramiko.Channel, python: str, pinger: Pinger) -> None:
        self.channel = channel
        self.pinger = pinger
        self._frames = FrameReader()
        self._stderr = bytearray()
        self._jobs: dict[int, Job] = {}  # running, by their number on the agent
        self._numbers = itertools.count(1)
        self.failure: str | None = None
        self.marker = status_marker()  # names the file of statuses it keeps on the host
        channel.exec_command(agent_remote_command(python, pinger, self.marker))

    @property
    def hello(self) -> bool:
        """Whether the agent has started (it says so first)."""
        return self._frames.hello

    def start(self, job: Job, kill_grace: float) -> None:
        """Ask the agent to start ``job``, which gets its ``number`` there (raises what paramiko
        raises when the channel is gone, ValueError for a request no argv can carry)."""
        number = next(self._numbers)
        self.channel.sendall(encode_start(number, job.request, kill_grace))
        self.pinger.sent()
        job.number = number
        self._jobs[number] = job

    def forget(self, number: int) -> None:
        """Stop waiting for job ``number`` (given up on: its kill got no answer in time)."""
        self._jobs.pop(number, None)

    def ended_jobs(self) -> Iterator[tuple[Job, Outcome]]:
        """Apply the frames the channel holds now to their jobs; the jobs they ended."""
        yield from take_frames(self.frames(), self._jobs)

    def kill(self, number: int) -> None:
        self.channel.sendall(encode_kill(number))
        self.pinger.sent()

    def ping_if_due(self) -> None:
        """Tell the agent we are still here, if nothing was said for a ping interval; give it
        up if it said nothing for the silence limit."""
        if self.pinger.silent() and self.failure is None:
            self.failure = self.pinger.given_up("the host's agent")
        if self.pinger.due():
            self.channel.sendall(PING)
            self.pinger.sent()

    def frames(self) -> Iterator[tuple[bytes, int, bytes]]:
        """The complete frames the channel holds now, a bounded amount per call (the channel's
        caller serves the link again in its next turn while more is left)."""
        channel = self.channel
        for _ in range(_READS_PER_TURN):
            took = False
            if channel.recv_stderr_ready():
                self._stderr += channel.recv_stderr(_CHUNK)
                del self._stderr[:-_STDERR_KEPT]
                took = True
            if channel.recv_ready() and self.failure is None:
                try:
                    yield from self._frames.feed(channel.recv(_CHUNK))
                except BackendError as exc:
                    self.failure = str(exc)
                took = True
            if not took:
                return
            self.pinger.heard()

    def drained(self) -> bool:
        """Whether the agent's channel is closed and nothing of it is left to read."""
        channel = self.channel
        return channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready()

    def ending(self) -> str:
        """How the agent ended, in a few words (its status and the last of its stderr)."""
        status = self.channel.exit_status
        said = last_lines(self._stderr.decode("utf-8", "replace")) or "no output"
        if not self.hello and status >= 0:
            return f"the remote launcher failed (status {status}): {said}"
        what = f"status {status}" if status >= 0 else "no exit status: killed by a signal?"
        return f"the host's agent ended ({what}): {said}"


def agent_remote_command(python: str, pinger: Pinger, marker: str) -> str:
    """The command line the agent's channel runs on the host (also shown by a dry run)."""
    return agent_command(python, pinger.silence_limit, marker)


def open_agent(transport: paramiko.Transport, settings: ParamikoSettings, target: Target,
               notify: Callable[[AgentLink], None]) -> AgentLink | str:
    """Start the host agent in a session channel of its own (round trips: in a set-up thread);
    ``notify(link)`` is called (in paramiko's thread) when output, the channel's exit status or
    its close arrives. Why not, if it could
    not be started."""
    channel = None
    try:
        channel = transport.open_session(timeout=settings.channel_timeout)
        link = AgentLink(channel, settings.remote_python, Pinger(settings.alive_interval))
    except CHANNEL_ERRORS as exc:
        if channel is not None:
            channel.close()
        return str(translate(exc, target, "cannot start the agent on"))
    watch_channel(channel, lambda: notify(link))
    return link


def kill_orphans_on(transport: paramiko.Transport, host: str, groups: list[int],
                    settings: ParamikoSettings) -> None:
    """The agent died (killed on the host) and left its jobs running: kill their process
    groups from a channel of their own, and wait for that, so that a job reported as lost is
    gone (:func:`lofarexec.transport.kill_orphans`)."""

    def run(command: str, seconds: float) -> str | None:
        try:
            channel = transport.open_session(timeout=settings.channel_timeout)
            channel.exec_command(command)
            finished = channel.status_event.wait(seconds)
            channel.close()
        except CHANNEL_ERRORS as exc:
            return describe(exc)
        return None if finished else f"no answer within {seconds:g} s"

    kill_orphans(host, groups, settings.kill_grace, run, timeout=KILL_CONFIRM)


def after_agent_link(link: AgentLink, running: list[Job], transport: paramiko.Transport | None,
                     pool: HostPool) -> list[Job]:
    """The agent's link ended with ``running`` jobs: those whose status the agent recorded on
    the host end with it; the others' process groups are killed, if the connection still
    works (the agent was killed there). The others, for the caller to fail."""
    running = _end_with_fetched_statuses(link, running, pool)
    orphans = [job.pid for job in running if job.pid]
    if orphans and transport is not None and not lost(transport):
        kill_orphans_on(transport, pool.target.name, orphans, pool.settings)
    return running


def _end_with_fetched_statuses(link: AgentLink, running: list[Job], pool: HostPool
                               ) -> list[Job]:
    """End those of ``running`` whose status the agent recorded on the host (read over a fresh
    connection: the old one may be frozen) with it; the others."""
    if not link.hello or not running:
        return running
    target, settings = pool.target, pool.settings

    def run(command: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        try:
            transport = connect(target, settings, pool.known_hosts, pool.keys, lambda _: None)
        except Exception as exc:  # noqa: BLE001 - the edge: anything is why not
            raise OSError(str(translate(exc, target, "cannot connect to"))) from None
        try:
            channel = transport.open_session(timeout=settings.channel_timeout)
            channel.settimeout(max(0.1, deadline - time.monotonic()))
            channel.exec_command(command)
            return channel.makefile("rb").read().decode("ascii", "replace")
        except CHANNEL_ERRORS as exc:
            raise OSError(describe(exc)) from None
        finally:
            close_transport(transport)

    by_number = {job.number: job for job in running}
    found = fetch_statuses(target.name, link.marker, list(by_number), run,
                           timeout=settings.connect_timeout + KILL_CONFIRM)
    for number, status in found.items():
        job = by_number.pop(number)
        job.finish(dataclasses.replace(job.outcome(status), note=stalled_note(target.name)))
    return list(by_number.values())

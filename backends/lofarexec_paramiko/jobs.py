"""A started job as the paramiko backend tracks it, and the states it goes through.

Only started jobs exist here (the scheduler keeps queued ones); each is touched under its host
pool's lock when its state changes, and reported exactly once by whoever makes it DONE.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from lofarexec.backend import LaunchRequest, Outcome, Report
from lofarexec.transport import RemoteLaunch, keep_tail

if TYPE_CHECKING:
    import paramiko

    from .connection import Connection

_CHUNK = 65536
_READS_PER_TURN = 16  # then the connection's other channels get a turn
_log = logging.getLogger("lofarexec.paramiko")


class State(enum.Enum):
    PENDING = "pending"  # given to a connection, no channel yet
    STARTING = "starting"  # its channel is being opened (or its start frame sent)
    RUNNING = "running"  # its command runs in a channel
    DONE = "done"  # reported, or about to be by whoever set this state


class Job:
    """One started job: what to run, its report callback, and where it runs.

    ``launch`` (the wrapper's command and stdin) is made for channel mode only; in agent mode
    the request goes to the agent as it is, and ``number`` names the job there.
    """

    __slots__ = ("channel", "connection", "errors", "host", "kill_requested", "kill_sent",
                 "launch", "number", "output", "pid", "report", "request", "requeued",
                 "state")

    def __init__(self, request: LaunchRequest, launch: RemoteLaunch | None,
                 report: Report) -> None:
        self.host = request.host
        self.request = request
        self.launch = launch
        self.report = report
        self.number = 0
        self.pid = 0  # agent mode: the job's pid (its process group) on the host
        self.state = State.PENDING
        self.connection: Connection | None = None
        self.channel: paramiko.Channel | None = None
        self.requeued = False
        self.kill_requested = False
        self.kill_sent = False
        self.output = bytearray()
        self.errors = bytearray()

    def finish(self, outcome: Outcome) -> None:
        """Report once (the caller made the job DONE under the lock); a failing callback must
        not kill the connection thread that serves the host's other jobs."""
        try:
            self.report(outcome)
        except Exception:  # noqa: BLE001 - logged with its traceback
            _log.exception("%s: the report callback of a job failed", self.host)

    def drain(self, channel: paramiko.Channel) -> bool:
        """Move what the channel holds into the tails, a bounded amount per call; True when
        nothing is left (a channel's buffers are filled by paramiko's thread)."""
        for _ in range(_READS_PER_TURN):
            took = False
            if channel.recv_ready():
                keep_tail(self.output, channel.recv(_CHUNK))
                took = True
            if channel.recv_stderr_ready():
                keep_tail(self.errors, channel.recv_stderr(_CHUNK))
                took = True
            if not took:
                return True
        return False

    def serve_channel(self) -> bool:
        """Channel mode, in the hub's thread: move what the job's channel holds into the tails;
        True once the channel is closed and drained (its ``exit_status`` is final)."""
        channel = self.channel
        if channel is None:
            return False
        closed = channel.closed  # before draining: all its data was buffered before the close
        if not self.drain(channel) or not closed:
            return False  # more to read, or more to come
        channel.close()
        return True

    def close_channel(self) -> None:
        """Channel mode: close the job's channel (given up on, or the connection ends)."""
        if self.channel is not None:
            self.channel.close()

    def outcome(self, status: int | None, failure: str | None = None) -> Outcome:
        """The node's outcome: the agent's status, or the wrapper's status line when it came
        (the truth, even if the connection broke right after); else a one-line transport error
        naming the host: ``failure`` if given, else what the remote side said."""
        output, errors = _text(self.output), _text(self.errors)
        if self.launch is None:  # agent mode: a status is the node's own
            if status is not None and failure is None:
                return Outcome(status, output=output, errors=errors)
            seen = Outcome(None, transport_error=failure or "no exit status")
        else:
            seen = self.launch.outcome(status, output, errors)
            errors = seen.errors  # the node's stderr, without the wrapper's status line
        if seen.transport_error is None:
            return seen
        if failure is None:
            failure = seen.transport_error if status is not None else (
                f"the remote command ended without an exit status: {_last_line(errors)}")
        return Outcome(None, transport_error=one_line(f"{self.host}: {failure}"), output=output,
                       errors=errors)


def one_line(text: str) -> str:
    return " ".join(text.split())


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

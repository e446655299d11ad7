"""Channel mode (``launch = channel``): each job in a session channel of its own.

The channel runs the launch wrapper (:func:`lofarexec.transport.remote_launch`), whose stdin
header is written at once and whose stdin then stays open: its EOF means "kill". When the server
closes the channel, the wrapper's status line (or the channel's exit status) is the job's end.
Called from a set-up thread, or the hub's (:mod:`.hub`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import paramiko

from lofarexec.backend import Outcome

from .connect import CHANNEL_ERRORS, lost, lost_reason, translate, watch_channel

if TYPE_CHECKING:
    from .hosts import Target
    from .jobs import Job
    from .settings import ParamikoSettings


def open_job_channel(transport: paramiko.Transport, job: Job, settings: ParamikoSettings,
                     target: Target, notify: Callable[[], None]
                     ) -> paramiko.Channel | Outcome | None:
    """Start ``job`` in a new channel (in a set-up thread: it waits for round trips);
    ``notify`` is called (in paramiko's thread) when output, its exit status or its close
    arrives. The channel once the job runs; the job's outcome when it
    cannot start; None when the connection turned out to be dead (nothing was started, so the
    job can go elsewhere)."""
    assert job.launch is not None
    try:
        channel = transport.open_session(timeout=settings.channel_timeout)
    except CHANNEL_ERRORS as exc:
        if lost(transport):
            return None
        error = translate(exc, target, "cannot open a session on")
        hint = ("; the server may allow fewer sessions per connection (MaxSessions) than "
                "[paramiko] sessions" if isinstance(exc, paramiko.ChannelException) else "")
        return Outcome(None, transport_error=f"{error}{hint}")
    watch_channel(channel, notify)
    try:
        channel.exec_command(job.launch.command)
        _send_header(channel, job.launch.stdin, transport)
    except CHANNEL_ERRORS as exc:
        channel.close()  # the wrapper's stdin ends: it kills the job
        return Outcome(None, transport_error=str(translate(exc, target, "cannot start the job on")))
    return channel


def _send_header(channel: paramiko.Channel, header: bytes, transport: paramiko.Transport) -> None:
    """Write the wrapper's stdin header; its stdin then stays open (its EOF means "kill").

    A command that ends at once (no such remote Python) may have closed the channel before
    the header goes out: that is not a failure to start but the job's end, which its exit
    status tells, so the channel is kept and read as any ended job's."""
    try:
        channel.sendall(header)
    except CHANNEL_ERRORS:
        if not (channel.closed and channel.exit_status_ready() and not lost(transport)):
            raise


def closed_channel_outcome(job: Job, transport: paramiko.Transport | None,
                           target: Target) -> Outcome:
    """The end of a job whose channel the server closed: the wrapper's status line when it
    came, else why the connection was lost while the job ran."""
    assert job.channel is not None
    status = job.channel.exit_status if job.channel.exit_status >= 0 else None
    if transport is not None and lost(transport):
        why = lost_reason(transport, target)
        return job.outcome(status, f"the connection was lost while the job ran ({why})")
    return job.outcome(status)

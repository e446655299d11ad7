"""The backend toolkit: what a transport plugin may build on, and what stays stable.

A backend imports only :mod:`lofarexec`, :mod:`lofarexec.backend`, :mod:`lofarexec.errors` and
this package (plus its own library); CI checks that with import-linter. Everything here is
documented in ``docs/api.rst`` and versioned: names are added within a major version, and a
deprecated name warns for one minor release before it goes.

Local processes
    :class:`ProcessLauncher` starts children in sessions of their own and watches thousands of
    them from one thread; :class:`ExecEnvironment` encodes an environment once per run;
    :func:`signal_group` signals a process group; :func:`keep_tail` keeps an output tail.
The remote half
    :func:`remote_launch` / :func:`start_through_wrapper` run a job under the launch wrapper,
    whose status line :meth:`RemoteLaunch.node_outcome` alone reads; :class:`AgentPool` keeps
    one host agent per host behind a local program (``ssh``, ``docker exec``); the agent frames
    (:func:`encode_start`, :class:`FrameReader`, :func:`take_frames`, :class:`Pinger`) for
    transports that reach the agent another way (paramiko); :func:`kill_orphans` (running
    :func:`orphan_kill_command`) kills the jobs an agent killed on its host left behind;
    :func:`fetch_statuses` reads the statuses an agent kept on its host (its file named by
    :func:`status_marker`) after its link stalled, for jobs then told :func:`stalled_note`.
Backend settings
    :func:`remote_python_field`, :func:`kill_grace_field`, :func:`alive_interval_field` declare
    the keys several backends share, and :func:`check_shared_settings` checks their bounds.
Small parts
    :func:`host_name_problem` / :func:`is_host_name`: the one check of a host name (from
    :mod:`lofarexec.hostnames`), made before a name goes on a launcher's command line;
    :class:`WakePipe` wakes a thread sleeping in ``select``; :class:`TimerHeap` (of
    :class:`Timer` entries) holds what such a thread must do later; :func:`out_of_descriptors`
    words a job's failure when the control node has no file descriptor left;
    :func:`descriptor_budget` (a :class:`DescriptorBudget` handing out slots) makes
    hosts beyond the open-files limit wait for a slot instead of failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lofarexec._lazy import lazy_attributes

if TYPE_CHECKING:  # the names, for type checkers; at run time each module loads when first used
    from lofarexec.hostnames import host_name_problem, is_host_name
    from lofarexec.transport.agent import KILL_CONFIRM, AgentClient
    from lofarexec.transport.agent_frames import (
        PING,
        FrameReader,
        Pinger,
        encode_kill,
        encode_start,
        take_frame,
        take_frames,
    )
    from lofarexec.transport.agent_pool import AgentPool
    from lofarexec.transport.descriptors import out_of_descriptors
    from lofarexec.transport.execenv import ExecEnvironment, spawn
    from lofarexec.transport.fdbudget import DescriptorBudget, Slot, descriptor_budget
    from lofarexec.transport.orphans import (
        fetch_statuses,
        kill_orphans,
        orphan_kill_command,
        stalled_note,
        status_marker,
    )
    from lofarexec.transport.process import (
        DEFAULT_KILL_GRACE,
        DRAIN_GRACE,
        ProcessHandle,
        ProcessLauncher,
        keep_tail,
        signal_group,
    )
    from lofarexec.transport.settings import (
        alive_interval_field,
        check_shared_settings,
        kill_grace_field,
        remote_python_field,
    )
    from lofarexec.transport.timers import Timer, TimerHeap
    from lofarexec.transport.wakeup import WakePipe
    from lofarexec.transport.wrapper import (
        DEFAULT_REMOTE_PYTHON,
        RemoteLaunch,
        agent_command,
        inline_program,
        job_environment,
        job_identity,
        last_lines,
        remote_launch,
        start_through_wrapper,
    )

#: public name -> the toolkit module that defines it. A backend imports only the modules of the
#: names it uses: the local backend never loads the host agent's client or frames (issue 17).
_EXPORTS: dict[str, str] = {
    "DEFAULT_KILL_GRACE": "lofarexec.transport.process",
    "DEFAULT_REMOTE_PYTHON": "lofarexec.transport.wrapper",
    "DRAIN_GRACE": "lofarexec.transport.process",
    "KILL_CONFIRM": "lofarexec.transport.agent",
    "PING": "lofarexec.transport.agent_frames",
    "AgentClient": "lofarexec.transport.agent",
    "AgentPool": "lofarexec.transport.agent_pool",
    "DescriptorBudget": "lofarexec.transport.fdbudget",
    "ExecEnvironment": "lofarexec.transport.execenv",
    "FrameReader": "lofarexec.transport.agent_frames",
    "Pinger": "lofarexec.transport.agent_frames",
    "ProcessHandle": "lofarexec.transport.process",
    "ProcessLauncher": "lofarexec.transport.process",
    "RemoteLaunch": "lofarexec.transport.wrapper",
    "Slot": "lofarexec.transport.fdbudget",
    "Timer": "lofarexec.transport.timers",
    "TimerHeap": "lofarexec.transport.timers",
    "WakePipe": "lofarexec.transport.wakeup",
    "agent_command": "lofarexec.transport.wrapper",
    "alive_interval_field": "lofarexec.transport.settings",
    "check_shared_settings": "lofarexec.transport.settings",
    "descriptor_budget": "lofarexec.transport.fdbudget",
    "encode_kill": "lofarexec.transport.agent_frames",
    "encode_start": "lofarexec.transport.agent_frames",
    "fetch_statuses": "lofarexec.transport.orphans",
    "host_name_problem": "lofarexec.hostnames",
    "inline_program": "lofarexec.transport.wrapper",
    "is_host_name": "lofarexec.hostnames",
    "job_environment": "lofarexec.transport.wrapper",
    "job_identity": "lofarexec.transport.wrapper",
    "keep_tail": "lofarexec.transport.process",
    "kill_grace_field": "lofarexec.transport.settings",
    "kill_orphans": "lofarexec.transport.orphans",
    "last_lines": "lofarexec.transport.wrapper",
    "orphan_kill_command": "lofarexec.transport.orphans",
    "out_of_descriptors": "lofarexec.transport.descriptors",
    "remote_launch": "lofarexec.transport.wrapper",
    "remote_python_field": "lofarexec.transport.settings",
    "signal_group": "lofarexec.transport.process",
    "spawn": "lofarexec.transport.execenv",
    "stalled_note": "lofarexec.transport.orphans",
    "start_through_wrapper": "lofarexec.transport.wrapper",
    "status_marker": "lofarexec.transport.orphans",
    "take_frame": "lofarexec.transport.agent_frames",
    "take_frames": "lofarexec.transport.agent_frames",
}

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_REMOTE_PYTHON",
    "DRAIN_GRACE",
    "KILL_CONFIRM",
    "PING",
    "AgentClient",
    "AgentPool",
    "DescriptorBudget",
    "ExecEnvironment",
    "FrameReader",
    "Pinger",
    "ProcessHandle",
    "ProcessLauncher",
    "RemoteLaunch",
    "Slot",
    "Timer",
    "TimerHeap",
    "WakePipe",
    "agent_command",
    "alive_interval_field",
    "check_shared_settings",
    "descriptor_budget",
    "encode_kill",
    "encode_start",
    "fetch_statuses",
    "host_name_problem",
    "inline_program",
    "is_host_name",
    "job_environment",
    "job_identity",
    "keep_tail",
    "kill_grace_field",
    "kill_orphans",
    "last_lines",
    "orphan_kill_command",
    "out_of_descriptors",
    "remote_launch",
    "remote_python_field",
    "signal_group",
    "spawn",
    "stalled_note",
    "start_through_wrapper",
    "status_marker",
    "take_frame",
    "take_frames",
]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())

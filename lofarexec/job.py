"""What a recipe asks for (:class:`ComputeJob`) and what it gets back (its ``results``).

A ``ComputeJob`` is cheap: a queued job is this object and a slot in a per-host queue, nothing
else (no thread, no process), so a recipe can hand the scheduler 100,000 of them.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from typing import Any


class JobState(str, enum.Enum):
    """Where a job is, and for finished jobs how it ended.

    ``str`` subclass so that the state stored in ``job.results['state']`` serialises as text.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRANSPORT_ERROR = "transport_error"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    NOT_STARTED = "not_started"

    @property
    def is_final(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)

    def __str__(self) -> str:
        return self.value


class ComputeJob:
    """One invocation of a node script on one host.

    ``command`` is the node command as the seed writes it (``"python /path/nodes/x.py"``); it is
    split with :func:`shlex.split`, never given to a shell. ``arguments`` are passed to the node
    after the log host and port, each as one argv element, byte for byte.

    After the run ``results`` holds: ``returncode`` (the real exit status, minus the signal number
    when killed by a signal, ``None`` when it never ran), ``state`` (a :class:`JobState` value),
    ``host``, ``start_time`` and ``end_time`` (epoch seconds), ``job_duration`` (seconds),
    ``attempts``, ``reason`` (why it did not succeed) and ``backend``, plus whatever the node
    put in its ``self.outputs`` (never replacing those keys).

    With ``store_arguments=True`` the arguments may be any JSON values (None, bool, numbers,
    strings, lists, dicts) of any size: the node (a ``LOFARnodeTCP``) fetches them over the
    authenticated job channel, and is started as ``<command> <job id> <log host> <log port>``.
    """

    def __init__(
        self,
        host: str | None,
        command: str,
        arguments: Iterable[Any] = (),
        *,
        timeout: float | None = None,
        store_arguments: bool = False,
    ) -> None:
        if host is not None and not isinstance(host, str):
            raise TypeError(f"ComputeJob host must be a string, not {type(host).__name__}")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("ComputeJob command must be a non-empty string")
        if "\0" in command:
            raise ValueError(f"ComputeJob command {command!r} holds a NUL byte, which no "
                             "program's argv can carry")
        self.host = host
        self.command = command
        self.store_arguments = store_arguments
        # Stored arguments travel as JSON over the job channel, so any JSON value will do;
        # argv arguments are text, as the seed has them.
        self.arguments: list[Any] = (
            list(arguments) if store_arguments else [_argument_text(a) for a in arguments]
        )
        self.timeout = timeout
        self.results: dict[str, Any] = {}
        self.id: int | None = None

    @property
    def state(self) -> JobState:
        """The job's state; ``pending`` until the scheduler has seen it."""
        return JobState(self.results.get("state", JobState.PENDING))

    def __repr__(self) -> str:
        return (
            f"ComputeJob(host={self.host!r}, command={self.command!r}, "
            f"arguments={self.arguments!r})"
        )


def _argument_text(argument: Any) -> str:
    """Arguments travel as argv strings (the seed's contract); numbers and paths are spelt out.

    Anything else (bytes, objects) is refused here rather than sent as its ``repr``.
    """
    if isinstance(argument, str):
        if "\0" in argument:
            raise ValueError(f"ComputeJob argument {argument!r} holds a NUL byte, which no "
                             "program's argv can carry; pass it with store_arguments=True")
        return argument
    if isinstance(argument, (int, float)) and not isinstance(argument, bool):
        return str(argument)
    if isinstance(argument, os.PathLike):
        return os.fspath(argument)
    raise TypeError(
        f"ComputeJob argument {argument!r} is a {type(argument).__name__}: arguments travel as "
        "command-line strings; pass str, int, float or a path"
    )

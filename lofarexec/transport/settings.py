"""Settings keys that several backends share: one default, one help text, one set of bounds.

A backend's settings dataclass declares them with the field factories and calls
:func:`check_shared_settings` from its ``__post_init__``::

    @dataclasses.dataclass(frozen=True)
    class MySettings:
        remote_python: str = remote_python_field("the launch wrapper")
        kill_grace: float = kill_grace_field()

        def __post_init__(self) -> None:
            check_shared_settings(self)

A bad value raises :class:`ValueError` naming the key, which lofarexec's config layer turns
into a :class:`~lofarexec.errors.ConfigError` naming the section and the file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lofarexec.transport.process import DEFAULT_KILL_GRACE
from lofarexec.transport.wrapper import DEFAULT_REMOTE_PYTHON

#: Seconds that ``kill_grace`` and ``alive_interval`` may be at most (an hour).
MAX_SECONDS = 3600.0
#: The keys :func:`check_shared_settings` checks, with their bounds in seconds.
_BOUNDS = {"kill_grace": (0.0, MAX_SECONDS), "alive_interval": (0.0, MAX_SECONDS)}


def remote_python_field(runs: str = "the launch wrapper") -> Any:
    """``remote_python``: the interpreter on the hosts that runs ``runs``."""
    return dataclasses.field(default=DEFAULT_REMOTE_PYTHON,
                             metadata={"help": f"Python on the hosts that runs {runs}"})


def kill_grace_field(whom: str = "the node") -> Any:
    """``kill_grace``: seconds between SIGTERM and SIGKILL of ``whom`` when a job is killed."""
    return dataclasses.field(
        default=DEFAULT_KILL_GRACE,
        metadata={"help": f"seconds between SIGTERM and SIGKILL for {whom} when a job is "
                          f"killed (0 to {MAX_SECONDS:g})"})


def alive_interval_field(help_text: str, default: int = 5) -> Any:
    """``alive_interval``: seconds between signs of life; ``help_text`` says whose (0: off)."""
    return dataclasses.field(default=default,
                             metadata={"help": f"{help_text} (0: off; at most "
                                               f"{MAX_SECONDS:g})"})


def check_shared_settings(settings: object) -> None:
    """Check the shared keys ``settings`` has; :class:`ValueError` naming the first bad one."""
    for name, (low, high) in _BOUNDS.items():
        value = getattr(settings, name, None)
        if value is not None and not low <= value <= high:
            raise ValueError(f"{name} = {value:g} is out of range: give between {low:g} and "
                             f"{high:g} seconds")
    python = getattr(settings, "remote_python", None)
    if python is not None and not python.strip():
        raise ValueError("remote_python is empty: name the hosts' Python, e.g. python3")

"""The transport interface: how a backend starts one job on one host.

A backend does transport only (DESIGN decision 2). The scheduler decides what runs where and
when; a backend is asked to :meth:`Backend.start` one :class:`LaunchRequest` and must, exactly
once and from any thread, call the ``report`` callback it was given with an :class:`Outcome`.
It returns a :class:`JobHandle` whose ``kill()`` makes the job (its whole process tree, on its
host) go away soon; the backend still reports the outcome afterwards.

Everything a backend needs to know about the node is already in the request: the full argv
(command split, log host, log port, arguments), the environment the node must see (PYTHONPATH
with ``engine_ppath`` prepended, ...) and the job's secret token, which must never be put on a
command line that ``ps`` on either machine would show.

Backends register through the ``lofarexec_register_backends(registry)`` hook: see
:mod:`lofarexec.plugin.spec`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from lofarexec.errors import PluginError


@dataclasses.dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything needed to start one node script on one host."""

    job_id: int
    host: str
    argv: tuple[str, ...]
    """The node's argv: the split command, the log host and port, then the job's arguments."""
    environment: Mapping[str, str]
    """Variables the node must see, on top of what the host's own environment provides."""
    token: str
    """The job's secret for the log channel: deliver it through environment or stdin only."""
    recipe_name: str = "pipeline"
    cores: int | None = None
    """The cores the recipe asked for (``ComputeJob(..., resources={"cores": N})``), if any."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended, as the transport saw it.

    ``returncode`` is the node's exit status, or minus the signal number that killed it.
    ``transport_error`` is set instead when the transport itself failed (the host could not be
    reached, the launcher could not start, the connection dropped): the node may never have run.
    ``output`` and ``errors`` are the last bytes of its stdout and stderr (bounded), for reports.
    ``note`` is what the user should know beyond the status (how it was learnt, if unusually).
    """

    returncode: int | None
    transport_error: str | None = None
    output: str = ""
    errors: str = ""
    note: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LaunchPreview:
    """What a backend would run for one job, told without running it (a dry run, ``-n``).

    .. versionadded:: 0.1
    """

    argv: tuple[str, ...]
    """The argv of the program started on the control node; empty when none is (``command``
    then says what runs)."""
    command: str | None = None
    """A command line run by a remote shell (an SSH exec request), when no local program is."""
    where: str = "control node"
    """Where ``argv`` or ``command`` runs: ``control node``, or the host and how it is reached."""
    per_host: bool = False
    """True when this runs once per host (a host agent) and each job is a request to it."""
    note: str = ""
    """What the reader should know beyond the words: how the environment and token travel."""


Report = Callable[[Outcome], None]


class JobHandle(Protocol):
    """What :meth:`Backend.start` gives back: the one operation the scheduler needs on a job.

    A handle whose job may not run yet when ``start`` returns (it waits for a connection or a
    descriptor slot) has a true ``starts_later`` attribute, and its backend calls
    :func:`report_running` when the job starts on its host: the job's time limit counts from
    then. Without it, the time limit counts from ``start``'s return.
    """

    def kill(self) -> None:
        """Make the job's whole process tree on its host go away (the backend still reports).

        Never raises: calling it twice, or after the job has ended and been reported, does
        nothing more and causes no second report.
        """


def report_running(report: Report) -> None:
    """Tell the scheduler that the job of ``report`` now runs on its host (for a handle that
    ``starts_later``); from any thread, before the job's outcome. Does nothing for a report
    function that does not listen for it (a test's).

    .. versionadded:: 0.1
    """
    running = getattr(report, "running", None)
    if running is not None:
        running()


class NothingToKill:
    """The handle of a job reported at once (it never started): there is nothing to kill."""

    def kill(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Settings of a backend that has none; its config section must be empty or absent."""


class Backend(ABC):
    """Base of every transport. Subclass, set ``name`` (and ``Settings``), implement ``start``.

    The scheduler calls :meth:`open` once before the first job of a run, :meth:`start` for each
    job (never concurrently, unless the class sets ``parallel_start``) and :meth:`close` once
    at the end (also after a kill, also after an error in ``open``); ``close`` must be safe to
    call twice.
    """

    name: ClassVar[str]
    Settings: ClassVar[type] = NoSettings
    """A dataclass; the ``pipeline.cfg`` section named after the backend is checked against it."""
    parallel_start: ClassVar[bool] = False
    """True when ``start`` may be called from several threads at once; the scheduler then
    starts jobs outside its processing role, so that two threads can start processes together."""
    local_only: ClassVar[bool] = False
    """True when every node runs on the control node, so the log receiver binds to loopback."""
    audit: ClassVar[bool] = False
    """True when ``start`` can run ``/bin/sh -c COMMAND`` on a host, reading its ``/proc``:
    after a run the runner then starts one such command per host used, to find and kill
    processes the run left there (:mod:`lofarexec.run.audit`). A batch system's backend leaves
    it off (a job per host at the end of every run)."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings if settings is not None else self.Settings()

    def open(self) -> None:
        """Prepare for a run (connection pools, control directories). Default: nothing."""

    @abstractmethod
    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        """Start one job and return at once; call ``report(outcome)`` exactly once when it ends.

        ``report`` may be called from any thread, also before ``start`` returns (a launch that
        fails at once). Raise nothing for a job-level failure: report it as an ``Outcome`` with
        ``transport_error`` set, so that one bad host never stops the run.
        """

    def close(self) -> None:
        """Release what :meth:`open` took. Default: nothing."""

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview | None:
        """What :meth:`start` would run for ``request``, for a dry run; None: not known.

        Called without :meth:`open`, and must start nothing, connect nowhere and write
        nothing. Build the answer with the code :meth:`start` uses, so that it cannot drift
        from the truth; put values that only exist once running (a socket path, a temporary
        folder) as ``<placeholders>``. It may raise a :class:`~lofarexec.errors.LofarexecError`
        for a setting that would make every launch fail (the dry run shows it).

        .. versionadded:: 0.1
        """
        return None


class BackendRegistry:
    """The backends known to this process, by name; filled by plugins through the hook."""

    def __init__(self) -> None:
        self._backends: dict[str, type[Backend]] = {}
        self._providers: dict[str, str] = {}
        self.current_provider = "unknown"
        """Set by the plugin manager while a plugin registers, so each backend knows its source."""

    def add(self, backend_class: type[Backend]) -> None:
        """Register ``backend_class`` under its ``name``; a second one of that name fails."""
        name = getattr(backend_class, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(
                f"{self.current_provider}: backend class {backend_class.__qualname__} needs a "
                "'name' class attribute that is a valid identifier"
            )
        if name in self._backends and self._backends[name] is not backend_class:
            raise PluginError(
                f"backend '{name}' is provided twice: by {self._providers[name]} and by "
                f"{self.current_provider}; uninstall one of them"
            )
        self._backends[name] = backend_class
        self._providers[name] = self.current_provider

    def get(self, name: str) -> type[Backend]:
        """The backend class called ``name``; else a one-line error listing the installed ones."""
        try:
            return self._backends[name]
        except KeyError:
            installed = ", ".join(sorted(self._backends)) or "none"
            raise PluginError(
                f"no backend called '{name}' is installed (installed: {installed}); fix "
                "[remote] method in pipeline.cfg or install the package that provides it"
            ) from None

    def provider(self, name: str) -> str:
        """The distribution (package) that registered backend ``name``."""
        return self._providers[name]

    def names(self) -> list[str]:
        return sorted(self._backends)

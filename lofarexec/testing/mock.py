"""The ``mock`` backend: jobs "run" in-process and end as the test says, at once or on demand.

For unit tests of recipes and of the scheduler, and for measuring the scheduler alone: no
process, no socket. Registered through the ``lofarexec`` entry-point group like any backend, so
``[remote] method = mock`` selects it. A test that wants to decide each job's fate passes a
``behaviour`` callable, or sets ``hold = True`` and later calls :meth:`MockBackend.finish`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from lofarexec.backend import Backend, LaunchRequest, Outcome, Report
from lofarexec.plugin.spec import hookimpl


@dataclasses.dataclass(frozen=True)
class MockSettings:
    """``[mock]`` section: the exit status every job gets unless a behaviour says otherwise."""

    returncode: int = dataclasses.field(default=0, metadata={"help": "exit status of every job"})


class _MockHandle:
    def __init__(self, backend: MockBackend, job_id: int) -> None:
        self._backend = backend
        self._job_id = job_id

    def kill(self) -> None:
        self._backend.finish(self._job_id, Outcome(-15))


class MockBackend(Backend):
    """In-process jobs that end at once, or when a test says (no process, no socket).

    Each job ends with ``behaviour(request)`` (default: the configured status), or, when
    ``hold`` is true, is held (and its request recorded) until :meth:`finish`.
    """

    name = "mock"
    Settings = MockSettings
    local_only = True

    behaviour: Callable[[LaunchRequest], Outcome] | None = None
    hold = False

    def __init__(self, settings: MockSettings | None = None) -> None:
        super().__init__(settings)
        self.requests: list[LaunchRequest] = []
        self._held: dict[int, Report] = {}
        self._lock = threading.Lock()
        self.started = threading.Condition(self._lock)

    def start(self, request: LaunchRequest, report: Report) -> _MockHandle:
        if not self.hold:
            behaviour = self.behaviour
            report(behaviour(request) if behaviour else Outcome(self.settings.returncode))
            return _MockHandle(self, request.job_id)
        with self._lock:
            self.requests.append(request)
            self._held[request.job_id] = report
            self.started.notify_all()
        return _MockHandle(self, request.job_id)

    def finish(self, job_id: int, outcome: Outcome | int = 0) -> bool:
        """End a held job; False if it is not (or no longer) running."""
        with self._lock:
            report = self._held.pop(job_id, None)
        if report is None:
            return False
        report(outcome if isinstance(outcome, Outcome) else Outcome(outcome))
        return True

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._held)


@hookimpl
def lofarexec_register_backends(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(MockBackend)

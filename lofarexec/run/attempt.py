"""One attempt of one job as the scheduler follows it: its report, its time limit, its verdict.

A backend reports an attempt's end through the :class:`AttemptReport` it was given. Its time
limit (``ComputeJob(timeout=)``, ``[remote] job_timeout``) counts from when the backend has the
job started: when ``start`` returned (or, for a ``parallel_start`` backend, when its handle came
back). A backend whose ``start`` only queues the job (it waits for a connection or a descriptor
slot) says so with a true ``starts_later`` on its handle and calls
:func:`lofarexec.backend.report_running` once the job runs: the wait is not counted
(:func:`time_left`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lofarexec.backend import JobHandle, Outcome
from lofarexec.job import JobState


class AttemptReport:
    """The ``report`` a backend gets for one attempt of one job: ``report(outcome)`` delivers
    its end to the scheduler; ``report.running()`` (:func:`lofarexec.backend.report_running`)
    notes when a start that only queued the job has it running on its host."""

    __slots__ = ("deadline", "deliver", "index", "running_since")

    def __init__(self, deliver: Callable[[object, object], None], index: int) -> None:
        self.deliver = deliver
        self.index = index
        self.deadline: float | None = None
        """The moment this attempt is checked next (its time limit, or a kill's patience)."""
        self.running_since: float | None = None

    def __call__(self, outcome: Outcome) -> None:
        self.deliver(self.index, outcome)

    def running(self) -> None:
        if self.running_since is None:
            self.running_since = time.monotonic()


def time_left(handle: JobHandle | None, attempt: AttemptReport, timeout: float | None,
              now: float) -> float | None:
    """When an attempt at its deadline is really due, if later than ``now``; None: due now.

    An attempt whose handle ``starts_later`` has used none of its time until its backend said
    it runs (a host waiting for a connection or a descriptor slot is the connect timeout's
    business, not the job's).
    """
    if timeout is None or not getattr(handle, "starts_later", False):
        return None
    if attempt.running_since is None:
        return now + timeout
    due = attempt.running_since + timeout
    return due if due > now else None


def verdict(
    outcome: Outcome, fate: JobState | None, killed_reason: str | None
) -> tuple[JobState, str | None]:
    """Decide a finished job's state and the reason shown to the user."""
    if fate is JobState.TIMED_OUT:
        return JobState.TIMED_OUT, "killed after exceeding its time limit"
    if fate is JobState.KILLED:
        return JobState.KILLED, f"run stopped ({killed_reason})"
    if outcome.transport_error is not None:
        return JobState.TRANSPORT_ERROR, outcome.transport_error
    note = f"; {outcome.note}" if outcome.note else ""
    if outcome.returncode == 0:
        return JobState.SUCCEEDED, outcome.note
    if outcome.returncode is not None and outcome.returncode < 0:
        return JobState.FAILED, f"node script killed by signal {-outcome.returncode}{note}"
    return JobState.FAILED, f"node script exited with status {outcome.returncode}{note}"

"""The scheduler: runs a batch of jobs through one backend, honouring per-host and global limits.

::

    recipe._schedule_jobs(jobs)
        |
        v
    Scheduler.run(jobs) -- blocks until every job has a final state
        |   queue[host]: FIFO of job indices        (a queued job costs one int in a deque)
        |   running[host] <= limit(host)            (argument > [remote] max_per_node > none,
        |   total running <= max_jobs                per-host overrides from [max_per_node])
        v
    backend.start(request, report) --> node script on its host
        ^                                   |
        |   events: SimpleQueue             | report(Outcome) from any thread, exactly once
        +----- (index, Outcome) <-----------+
               ("kill", reason)  <---------- kill(): Ctrl-C / SIGTERM handler, other threads
               timeout          <---------- nearest job deadline (the only wait with a timeout)

One thread (the caller's) does all bookkeeping, so there are no locks on the hot path. It
blocks on the event queue, never sleeps in a polling loop: a finished job frees its slot and
the next queued job of that host starts at once. ``kill()`` is safe from a signal handler
(``SimpleQueue.put`` is re-entrant): it stops new starts, kills every running job on its host,
marks the queued ones ``not_started``, waits for the backend to confirm the kills, then
``run`` raises :class:`~lofarexec.errors.PipelineQuit`.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from lofarexec.backend import Backend, JobHandle, LaunchRequest, Outcome
from lofarexec.errors import LofarexecError, PipelineQuit
from lofarexec.job import ComputeJob, JobState

#: After a kill, how long to wait for a backend to report before giving up on a job.
KILL_REPORT_TIMEOUT = 10.0
_KILL = "kill"
_log = logging.getLogger("lofarexec.scheduler")


class SchedulerObserver(Protocol):
    """Who hears about each job as it starts and ends (the plugin hooks, in practice)."""

    def job_started(self, job: ComputeJob) -> None: ...

    def job_finished(self, job: ComputeJob) -> None: ...


class Limits:
    """How many jobs may run at once: per host (with overrides) and in total."""

    def __init__(
        self,
        per_host: int | None = None,
        overrides: Mapping[str, int] | None = None,
        total: int | None = None,
    ) -> None:
        for value in (per_host, total, *(overrides or {}).values()):
            if value is not None and value < 1:
                raise ValueError(f"a job limit must be a positive number, not {value}")
        self.per_host = per_host
        self.overrides = dict(overrides or {})
        self.total = total

    def for_host(self, host: str) -> int | None:
        return self.overrides.get(host, self.per_host)


class Scheduler:
    """Runs one batch of jobs; create one per ``_schedule_jobs`` call."""

    def __init__(
        self,
        backend: Backend,
        prepare: Callable[[ComputeJob], LaunchRequest],
        *,
        limits: Limits | None = None,
        error: threading.Event | None = None,
        observer: SchedulerObserver | None = None,
        job_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.prepare = prepare
        self.limits = limits or Limits()
        self.error = error if error is not None else threading.Event()
        self.observer = observer
        self.job_timeout = job_timeout
        self._events: queue.SimpleQueue[tuple[object, object]] = queue.SimpleQueue()
        self._killed_reason: str | None = None

    # -- public ------------------------------------------------------------------------------
    def kill(self, reason: str = "killed") -> None:
        """Stop the run: no new starts, running jobs killed. Safe from signal handlers."""
        self._events.put((_KILL, reason))

    def run(
        self, jobs: Sequence[ComputeJob], on_waiting: Callable[[], None] | None = None
    ) -> None:
        """Run ``jobs`` to completion; raise PipelineQuit if the run was killed.

        ``on_waiting`` is called once, when the first jobs have been started and the scheduler
        begins to wait for them (the seed's "Waiting for compute threads..." moment).
        """
        batch = _Batch(self, jobs)
        batch.fill_all()
        if on_waiting is not None:
            on_waiting()
        while batch.running:
            try:
                kind, payload = self._events.get(timeout=batch.next_wait())
            except queue.Empty:
                batch.on_deadlines()
                continue
            if kind == _KILL:
                batch.on_kill(str(payload))
            else:
                assert isinstance(kind, int) and isinstance(payload, Outcome)
                batch.on_report(kind, payload)
        if batch.killed_reason is not None:
            raise PipelineQuit(f"run stopped ({batch.killed_reason}); running jobs were killed")


class _Batch:
    """The state of one ``Scheduler.run``; all of it is touched by the scheduler thread only."""

    def __init__(self, scheduler: Scheduler, jobs: Sequence[ComputeJob]) -> None:
        self.scheduler = scheduler
        self.jobs = jobs
        self.queues: dict[str, deque[int]] = {}
        self.running_on: dict[str, int] = {}
        self.handles: dict[int, JobHandle | None] = {}
        self.waiting_for_total: deque[str] = deque()
        self.deadlines: list[tuple[float, int]] = []
        self.fates: dict[int, JobState] = {}
        self.killed_reason: str | None = None
        backend_name = scheduler.backend.name
        for index, job in enumerate(jobs):
            job.id = index
            job.results = {"state": JobState.PENDING.value, "host": job.host,
                           "backend": backend_name, "attempts": 0, "returncode": None}
            self.queues.setdefault(str(job.host), deque()).append(index)

    @property
    def running(self) -> int:
        return len(self.handles)

    # -- starting ------------------------------------------------------------------------------
    def fill_all(self) -> None:
        for host in list(self.queues):
            self.fill(host)

    def fill(self, host: str) -> None:
        """Start queued jobs of ``host`` while it has free slots (and the total allows)."""
        pending = self.queues.get(host)
        limit = self.scheduler.limits.for_host(host)
        total = self.scheduler.limits.total
        while pending and (limit is None or self.running_on.get(host, 0) < limit):
            if self.killed_reason is not None:
                return
            if total is not None and self.running >= total:
                if host not in self.waiting_for_total:
                    self.waiting_for_total.append(host)
                return
            self.start(pending.popleft(), host)

    def start(self, index: int, host: str) -> None:
        scheduler = self.scheduler
        job = self.jobs[index]
        results = job.results
        results["state"] = JobState.RUNNING.value
        results["attempts"] += 1
        results["start_time"] = time.time()
        self.running_on[host] = self.running_on.get(host, 0) + 1
        self.handles[index] = None  # counted as running before the backend may report
        timeout = job.timeout if job.timeout is not None else scheduler.job_timeout
        if timeout is not None:
            heapq.heappush(self.deadlines, (time.monotonic() + timeout, index))
        if scheduler.observer is not None:
            scheduler.observer.job_started(job)
        events = scheduler._events
        try:
            handle = scheduler.backend.start(
                scheduler.prepare(job), lambda outcome: events.put((index, outcome))
            )
        except Exception as exc:  # one job's launch failure must not stop the run
            if not isinstance(exc, LofarexecError):
                _log.exception("starting job %d on %s failed", index, host)
            events.put((index, Outcome(None, transport_error=f"could not start: {exc}")))
            return
        self.handles[index] = handle

    # -- ending ----------------------------------------------------------------------------------
    def on_report(self, index: int, outcome: Outcome) -> None:
        if index not in self.handles:
            return  # reported twice, or after we gave up waiting for it: keep the first verdict
        del self.handles[index]
        job = self.jobs[index]
        host = str(job.host)
        self.running_on[host] -= 1
        self.record(job, outcome, self.fates.pop(index, None))
        if self.killed_reason is None:
            self.fill(host)
            self.fill_waiting_hosts()

    def record(self, job: ComputeJob, outcome: Outcome, fate: JobState | None) -> None:
        results = job.results
        end = time.time()
        results["end_time"] = end
        results["job_duration"] = end - results["start_time"]
        results["returncode"] = outcome.returncode
        results["output"] = outcome.output
        results["errors"] = outcome.errors
        state, reason = _verdict(outcome, fate, self.killed_reason)
        results["state"] = state.value
        if reason:
            results["reason"] = reason
        if state is not JobState.SUCCEEDED:
            self.scheduler.error.set()
        if self.scheduler.observer is not None:
            self.scheduler.observer.job_finished(job)

    def fill_waiting_hosts(self) -> None:
        total = self.scheduler.limits.total
        while self.waiting_for_total and (total is None or self.running < total):
            self.fill(self.waiting_for_total.popleft())

    # -- deadlines and kills -------------------------------------------------------------------
    def next_wait(self) -> float | None:
        if not self.deadlines:
            return None
        return max(0.0, self.deadlines[0][0] - time.monotonic())

    def on_deadlines(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, index = heapq.heappop(self.deadlines)
            if index not in self.handles or index in self.fates:
                continue
            if self.killed_reason is not None:  # a kill that the backend never confirmed
                self.abandon(index)
                continue
            self.fates[index] = JobState.TIMED_OUT
            self.kill_one(index)

    def on_kill(self, reason: str) -> None:
        if self.killed_reason is not None:
            return
        self.killed_reason = reason
        self.scheduler.error.set()
        for pending in self.queues.values():
            while pending:
                self.mark_not_started(self.jobs[pending.popleft()], reason)
        self.deadlines = [(time.monotonic() + KILL_REPORT_TIMEOUT, i) for i in self.handles]
        heapq.heapify(self.deadlines)
        for index in list(self.handles):
            self.fates.setdefault(index, JobState.KILLED)
            self.kill_one(index)

    def kill_one(self, index: int) -> None:
        handle = self.handles.get(index)
        if handle is not None:
            handle.kill()

    def abandon(self, index: int) -> None:
        """The backend did not confirm a kill in time: record the job as killed and move on."""
        self.on_report(index, Outcome(None, transport_error="no report from the backend after kill"))

    def mark_not_started(self, job: ComputeJob, reason: str) -> None:
        job.results["state"] = JobState.NOT_STARTED.value
        job.results["reason"] = f"not started: run stopped ({reason})"
        if self.scheduler.observer is not None:
            self.scheduler.observer.job_finished(job)


def _verdict(
    outcome: Outcome, fate: JobState | None, killed_reason: str | None
) -> tuple[JobState, str | None]:
    """Decide a finished job's state and the reason shown to the user."""
    if fate is JobState.TIMED_OUT:
        return JobState.TIMED_OUT, "killed after exceeding its time limit"
    if fate is JobState.KILLED:
        return JobState.KILLED, f"killed: run stopped ({killed_reason})"
    if outcome.transport_error is not None:
        return JobState.TRANSPORT_ERROR, outcome.transport_error
    if outcome.returncode == 0:
        return JobState.SUCCEEDED, None
    if outcome.returncode is not None and outcome.returncode < 0:
        return JobState.FAILED, f"node script killed by signal {-outcome.returncode}"
    return JobState.FAILED, f"node script exited with status {outcome.returncode}"

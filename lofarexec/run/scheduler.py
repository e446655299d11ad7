"""The scheduler: runs a batch of jobs through one backend, honouring per-host and global limits.

::

    recipe._schedule_jobs(jobs)
        |
        v
    Scheduler.run(jobs) -- the caller blocks until every job has a final state
        |   queue[host]: FIFO of job indices        (a queued job costs one int in a deque)
        |   running[host] <= limit(host)            (argument > [remote] max_per_node > none,
        |   total running <= max_jobs                per-host overrides from [max_per_node])
        |   host-less jobs -> least-loaded host of the pool ([cluster] hosts, the allocation)
        v
    backend.start(request, report) --> node script on its host
        ^                                   |
        |  events, processed by one thread  | report(Outcome) from any thread, exactly once
        |  at a time, in arrival order      |
        +---- (index, Outcome) <------------+
              ("kill", reason)  <----------- kill(): Ctrl-C / SIGTERM handler, other threads
              ("deadlines", _)  <----------- the caller's wait times out at the next deadline
              ("launched", handle) <-------- a parallel start's handle (see below)

Whichever thread delivers an event processes it (and any that arrive meanwhile) under the
scheduler's exclusive processing role, so the thread that sees a job end — a backend's watcher
thread, usually — frees the slot and starts the host's next queued job itself, with no hand-off
between threads per job. Nothing sleeps in a polling loop: the caller waits on a queue for
"all done", a kill, or the nearest job deadline. ``kill()`` is safe from a signal handler (it
only puts a message on that queue): it stops new starts, kills every running job on its host,
marks the queued ones ``not_started``, waits for the backend to confirm the kills, then ``run``
raises :class:`~lofarexec.errors.PipelineQuit`.

Who calls what, and how often at once: the observer's callbacks (the job hooks) and ``prepare``
run inside the processing role, so one at a time, though not always on the same thread. A
backend's ``start`` runs there too, one at a time, unless the backend declares
``parallel_start``: then a thread makes the starts it decided right after giving up the role, so
``start`` may run on several threads at once and alongside the processing of other events.

The parts: :mod:`~lofarexec.run.limits` (how many may run), :mod:`~lofarexec.run.placement`
(where host-less jobs go), :mod:`~lofarexec.run.batch` (the state of one run and each job's
verdict); this module delivers the events and waits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from lofarexec.backend import Backend, LaunchRequest, Outcome
from lofarexec.errors import PipelineQuit
from lofarexec.job import ComputeJob, JobState
from lofarexec.run.batch import KILL_REPORT_TIMEOUT, Batch
from lofarexec.run.halt import NEVER, HaltPolicy
from lofarexec.run.hosthealth import DEFAULT_HOST_FAILURES
from lofarexec.run.limits import Limits
from lofarexec.run.retry import RetryPolicy

__all__ = ["KILL_REPORT_TIMEOUT", "Limits", "Scheduler", "SchedulerObserver"]

_KILL = "kill"
_FILL = "fill"
_DEADLINES = "deadlines"
_WAKE = "wake"
_LAUNCHED = "launched"
_EXPIRE = "expire"
_log = logging.getLogger("lofarexec.run.scheduler")


class SchedulerObserver(Protocol):
    """Who hears about each job as it starts and ends (the plugin hooks, in practice):
    ``job_started`` once per attempt, ``job_finished`` once, with the final state."""

    def job_started(self, job: ComputeJob) -> None: ...

    def job_finished(self, job: ComputeJob) -> None: ...


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
        pool: Sequence[str] = (),
        fail_fast: bool = False,
        done_before: frozenset[int] = frozenset(),
        retry: RetryPolicy | None = None,
        host_failures: int = DEFAULT_HOST_FAILURES,
        host_down_after: float | None = None,
        halt: HaltPolicy = NEVER,
    ) -> None:
        self.backend = backend
        self.done_before = done_before
        """Indices of jobs that succeeded in an earlier run (``--resume``): never started."""
        self.fail_fast = fail_fast
        """Stop the whole batch (kill running, skip queued) when one job does not succeed."""
        self.halt = HaltPolicy("now", count=1) if fail_fast else halt
        """When failures stop the batch (``[remote] halt``); ``fail_fast`` is ``now,fail=1``."""
        self.retry = retry or RetryPolicy()
        """Which attempts run again (none unless given: the runner passes the config's)."""
        self.host_failures = host_failures
        self.host_down_after = host_down_after
        """Transport failures in a row, or seconds down, that quarantine a host."""
        self.pool = list(pool)
        """Hosts for jobs created without one (``host=None``): the least-loaded gets each."""
        self.prepare = prepare
        self.limits = limits or Limits()
        self.error = error if error is not None else threading.Event()
        self.observer = observer
        self.job_timeout = job_timeout
        self._wakeups: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._inbox: deque[tuple[object, object]] = deque()
        self._inbox_lock = threading.Lock()
        self._draining = False
        self._batch: Batch | None = None
        self._failure: BaseException | None = None
        self._stop_reason: str | None = None

    # -- public ------------------------------------------------------------------------------
    def kill(self, reason: str = "killed") -> None:
        """Stop the run: no new starts, running jobs killed. Safe from signal handlers."""
        self._stop_reason = reason  # seen by a run that has not started any job yet
        self._wakeups.put((_KILL, reason))

    def expire(self, index: int, reason: str) -> None:
        """End running job ``index`` as ``timed_out`` (kill it); ``reason`` is for the log
        only (the idle watch words the job's reason). Does nothing once the job has ended."""
        _log.debug("job %d expires: %s", index, reason)
        self.deliver(_EXPIRE, index)

    def run(
        self, jobs: Sequence[ComputeJob], on_waiting: Callable[[], None] | None = None
    ) -> None:
        """Run ``jobs`` to completion; raise PipelineQuit if the run was killed.

        ``on_waiting`` is called once, when the first jobs have been started and the scheduler
        begins to wait for them (the seed's "Waiting for compute threads..." moment).
        """
        batch = self._batch = Batch(self, jobs)
        if self._stop_reason is not None:
            self.deliver(_KILL, self._stop_reason)
        self.deliver(_FILL, None)
        if on_waiting is not None:
            on_waiting()
        while not batch.finished:
            try:
                kind, payload = self._wakeups.get(timeout=batch.next_wait())
            except queue.Empty:
                kind, payload = _DEADLINES, None
            if kind in (_KILL, _DEADLINES):
                self.deliver(kind, payload)
        if self._failure is not None:
            raise self._failure
        if batch.quit:
            raise PipelineQuit(f"run stopped ({batch.killed_reason}); running jobs were killed")

    # -- event delivery -----------------------------------------------------------------------
    def deliver(self, kind: object, payload: object) -> None:
        """Queue an event; process the queue unless another thread is already doing so.

        For a backend that allows it (``parallel_start``), the starts decided while processing
        are made after this thread has given up the processing role, so that another thread
        can process (and start jobs) meanwhile; their handles come back as events.
        """
        with self._inbox_lock:
            self._inbox.append((kind, payload))
            if self._draining:
                return
            self._draining = True
        while True:
            launches = self._drain()
            if not launches:
                return
            started = [(index, self._batch.launch(index, request, report),  # type: ignore[union-attr]
                        report) for index, request, report in launches]
            with self._inbox_lock:
                self._inbox.extend((_LAUNCHED, item) for item in started)
                if self._draining:
                    return  # the thread processing now takes the handles too
                self._draining = True

    def _drain(self) -> list[tuple[int, LaunchRequest, Callable[[Outcome], None]]]:
        """Process events until none is left; give up the role; return the starts to make."""
        batch = self._batch
        assert batch is not None
        while True:
            with self._inbox_lock:
                if not self._inbox:
                    launches, batch.to_launch = batch.to_launch, []
                    self._draining = False
                    return launches
                kind, payload = self._inbox.popleft()
            self._process(kind, payload)

    def _process(self, kind: object, payload: object) -> None:
        batch = self._batch
        assert batch is not None
        try:
            if isinstance(kind, int):
                assert isinstance(payload, Outcome)
                batch.on_report(kind, payload)
            elif kind == _FILL:
                batch.fill_all()
            elif kind == _KILL:
                batch.on_kill(str(payload))
            elif kind == _DEADLINES:
                batch.on_deadlines()
            elif kind == _LAUNCHED:
                batch.on_launched(*payload)  # type: ignore[misc]
            elif kind == _EXPIRE and payload in batch.handles and payload not in batch.fates:
                batch.fates[payload] = JobState.TIMED_OUT  # type: ignore[index]
                batch.kill_one(payload)  # type: ignore[arg-type]
        except BaseException as exc:  # a bug: stop the run loudly rather than hang it
            _log.exception("scheduler failed while handling %r", kind)
            self._failure = exc
            batch.finished = True
        if batch.finished or batch.deadline_moved:
            batch.deadline_moved = False
            self._wakeups.put((_WAKE, None))

"""The scheduler: runs a batch of jobs through one backend, honouring per-host and global limits.

::

    recipe._schedule_jobs(jobs)
        |
        v
    Scheduler.run(jobs) -- the caller blocks until every job has a final state
        |   queue[host]: FIFO of job indices        (a queued job costs one int in a deque)
        |   running[host] <= limit(host)            (argument > [remote] max_per_node > none,
        |   total running <= max_jobs                per-host overrides from [max_per_node])
        v
    backend.start(request, report) --> node script on its host
        ^                                   |
        |  events, processed by one thread  | report(Outcome) from any thread, exactly once
        |  at a time, in arrival order      |
        +---- (index, Outcome) <------------+
              ("kill", reason)  <----------- kill(): Ctrl-C / SIGTERM handler, other threads
              ("deadlines", _)  <----------- the caller's wait times out at the next deadline

Whichever thread delivers an event processes it (and any that arrive meanwhile) under the
scheduler's exclusive "drainer" role, so the thread that sees a job end — a backend's watcher
thread, usually — frees the slot and starts the host's next queued job itself, with no hand-off
between threads per job. Nothing sleeps in a polling loop: the caller waits on a queue for
"all done", a kill, or the nearest job deadline. ``kill()`` is safe from a signal handler (it
only puts a message on that queue): it stops new starts, kills every running job on its host,
marks the queued ones ``not_started``, waits for the backend to confirm the kills, then ``run``
raises :class:`~lofarexec.errors.PipelineQuit`. Backends' ``start`` and the observer's callbacks
are called by one thread at a time, never concurrently, but not always the same thread.
"""

from __future__ import annotations

import heapq
import itertools
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
_FILL = "fill"
_DEADLINES = "deadlines"
_WAKE = "wake"
_LAUNCHED = "launched"
_log = logging.getLogger("lofarexec.run.scheduler")


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
        # Host names compare without case, as DNS does (and pipeline.cfg lower-cases its keys).
        self.overrides = {host.lower(): limit for host, limit in (overrides or {}).items()}
        self.total = total

    def for_host(self, host: str) -> int | None:
        return self.overrides.get(host.lower(), self.per_host) if self.overrides else self.per_host


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
    ) -> None:
        self.backend = backend
        self.fail_fast = fail_fast
        """Stop the whole batch (kill running, skip queued) when one job does not succeed."""
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
        self._batch: _Batch | None = None
        self._failure: BaseException | None = None
        self._stop_reason: str | None = None

    # -- public ------------------------------------------------------------------------------
    def kill(self, reason: str = "killed") -> None:
        """Stop the run: no new starts, running jobs killed. Safe from signal handlers."""
        self._stop_reason = reason  # seen by a run that has not started any job yet
        self._wakeups.put((_KILL, reason))

    def run(
        self, jobs: Sequence[ComputeJob], on_waiting: Callable[[], None] | None = None
    ) -> None:
        """Run ``jobs`` to completion; raise PipelineQuit if the run was killed.

        ``on_waiting`` is called once, when the first jobs have been started and the scheduler
        begins to wait for them (the seed's "Waiting for compute threads..." moment).
        """
        batch = self._batch = _Batch(self, jobs)
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
            started = [(index, self._batch.launch(index, request, report))  # type: ignore[union-attr]
                       for index, request, report in launches]
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
        except BaseException as exc:  # a bug: stop the run loudly rather than hang it
            _log.exception("scheduler failed while handling %r", kind)
            self._failure = exc
            batch.finished = True
        if batch.finished or batch.deadline_moved:
            batch.deadline_moved = False
            self._wakeups.put((_WAKE, None))

    def _report_to(self, index: int) -> Callable[[Outcome], None]:
        return lambda outcome: self.deliver(index, outcome)


class _Batch:
    """The state of one ``Scheduler.run``; touched only by the thread draining the events."""

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
        self.finished = not jobs
        self.to_launch: list[tuple[int, LaunchRequest, Callable[[Outcome], None]]] = []
        self.deadline_moved = False
        self.quit = False
        backend_name = scheduler.backend.name
        self.open_jobs: deque[int] = deque()
        self.pool = _Pool(scheduler.pool, self)
        for index, job in enumerate(jobs):
            job.id = index
            job.results = {"state": JobState.PENDING.value, "host": job.host,
                           "backend": backend_name, "attempts": 0, "returncode": None}
            if job.host is None:
                self.open_jobs.append(index)
            else:
                self.queues.setdefault(job.host, deque()).append(index)
        if self.open_jobs and not scheduler.pool:
            raise ValueError(f"job {self.open_jobs[0]} has no host and the run has no host list: "
                             "give each job a host, set [cluster] hosts, or run inside an "
                             "allocation ($SLURM_JOB_NODELIST, $PBS_NODEFILE)")

    @property
    def running(self) -> int:
        return len(self.handles)

    # -- starting ------------------------------------------------------------------------------
    def fill_all(self) -> None:
        for host in list(self.queues):
            self.fill(host)
        self.place_open_jobs()
        if not self.handles:
            self.finished = True

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

    def has_room(self, host: str) -> bool:
        """Whether ``host`` may start one more job now (its own limit; the total apart)."""
        limit = self.scheduler.limits.for_host(host)
        return limit is None or self.running_on.get(host, 0) < limit

    def place_open_jobs(self) -> None:
        """Start jobs without a host on the least-loaded pool hosts that have room.

        A host's own queue goes first: jobs placed by data locality are never pushed back.
        """
        total = self.scheduler.limits.total
        while self.open_jobs and self.killed_reason is None:
            if total is not None and self.running >= total:
                return
            host = self.pool.least_loaded()
            if host is None:
                return
            index = self.open_jobs.popleft()
            job = self.jobs[index]
            job.host = host
            job.results["host"] = host
            self.start(index, host)
            self.pool.update(host)

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
            deadline = time.monotonic() + timeout
            self.deadline_moved |= not self.deadlines or deadline < self.deadlines[0][0]
            heapq.heappush(self.deadlines, (deadline, index))
        self.notify("job_started", job)
        report = scheduler._report_to(index)
        try:
            request = scheduler.prepare(job)
        except Exception as exc:  # one job's failure to prepare must not stop the run
            _log.exception("preparing job %d on %s failed", index, host)
            report(Outcome(None, transport_error=f"could not start: {exc}"))
            return
        if scheduler.backend.parallel_start:
            self.to_launch.append((index, request, report))  # started once the role is given up
            return
        handle = self.launch(index, request, report)
        if index in self.handles:  # not already reported (a report is processed after us)
            self.handles[index] = handle

    def launch(self, index: int, request: LaunchRequest,
               report: Callable[[Outcome], None]) -> JobHandle | None:
        """Ask the backend to start a job; a failure becomes the job's transport error."""
        try:
            return self.scheduler.backend.start(request, report)
        except Exception as exc:  # one job's launch failure must not stop the run
            if not isinstance(exc, LofarexecError):
                _log.exception("starting job %d on %s failed", index, request.host)
            report(Outcome(None, transport_error=f"could not start: {exc}"))
            return None

    def on_launched(self, index: int, handle: JobHandle | None) -> None:
        """A start made outside the processing role has its handle: keep it, or use it at once
        if the job was killed (or timed out) in the meantime."""
        if handle is None or index not in self.handles:
            return  # it could not start, or it has ended already
        self.handles[index] = handle
        if index in self.fates:
            handle.kill()

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
            if self.open_jobs:
                self.pool.update(host)
                self.place_open_jobs()
        if not self.handles:
            self.finished = True

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
        self.notify("job_finished", job)
        if (state is not JobState.SUCCEEDED and self.scheduler.fail_fast
                and self.killed_reason is None):
            self.on_kill(f"job {job.id} on {job.host} {state.value}", external=False)

    def notify(self, event: str, job: ComputeJob) -> None:
        """Tell the observer; a failing observer (a plugin) is logged and never stops the run."""
        observer = self.scheduler.observer
        if observer is None:
            return
        try:
            getattr(observer, event)(job)
        except Exception:
            _log.exception("a %s observer failed for job %s; the run goes on", event, job.id)

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

    def on_kill(self, reason: str, external: bool = True) -> None:
        """Stop the batch; ``external`` (a signal, the kill switch) makes ``run`` raise."""
        if self.killed_reason is not None:
            return
        self.killed_reason = reason
        self.quit = external
        self.scheduler.error.set()
        for pending in (*self.queues.values(), self.open_jobs):
            while pending:
                self.mark_not_started(self.jobs[pending.popleft()], reason)
        self.deadlines = [(time.monotonic() + KILL_REPORT_TIMEOUT, i) for i in self.handles]
        heapq.heapify(self.deadlines)
        self.deadline_moved = True
        for index in list(self.handles):
            self.fates.setdefault(index, JobState.KILLED)
            self.kill_one(index)
        if not self.handles:
            self.finished = True

    def kill_one(self, index: int) -> None:
        handle = self.handles.get(index)
        if handle is not None:
            handle.kill()

    def abandon(self, index: int) -> None:
        """The backend did not confirm a kill in time: record the job as killed and move on."""
        lost = Outcome(None, transport_error="no report from the backend after kill")
        self.on_report(index, lost)

    def mark_not_started(self, job: ComputeJob, reason: str) -> None:
        job.results["state"] = JobState.NOT_STARTED.value
        job.results["reason"] = f"run stopped ({reason}) before it started"
        self.notify("job_finished", job)


class _Pool:
    """The host list for jobs without a host, as a heap ordered by running jobs.

    Entries are refreshed lazily: a popped entry whose load is stale is pushed back with the
    current load, so picking the least-loaded of 1,000 hosts costs a few heap operations, not a
    scan.
    """

    def __init__(self, hosts: Sequence[str], batch: _Batch) -> None:
        self.batch = batch
        self.order = itertools.count()
        self.heap = [(0, next(self.order), host) for host in dict.fromkeys(hosts)]

    def update(self, host: str) -> None:
        heapq.heappush(self.heap, (self.batch.running_on.get(host, 0), next(self.order), host))

    def least_loaded(self) -> str | None:
        """The least-loaded host with room and an empty own queue, or None if there is none."""
        batch, full, chosen = self.batch, [], None
        seen: set[str] = set()
        while self.heap:
            load, order, host = heapq.heappop(self.heap)
            if host in seen:
                continue  # an older entry of a host already considered
            current = batch.running_on.get(host, 0)
            if load != current:
                heapq.heappush(self.heap, (current, next(self.order), host))
                continue
            seen.add(host)
            if batch.has_room(host) and not batch.queues.get(host):
                chosen = host
                break
            full.append((load, order, host))
        for entry in full:
            heapq.heappush(self.heap, entry)
        return chosen


def _verdict(
    outcome: Outcome, fate: JobState | None, killed_reason: str | None
) -> tuple[JobState, str | None]:
    """Decide a finished job's state and the reason shown to the user."""
    if fate is JobState.TIMED_OUT:
        return JobState.TIMED_OUT, "killed after exceeding its time limit"
    if fate is JobState.KILLED:
        return JobState.KILLED, f"run stopped ({killed_reason})"
    if outcome.transport_error is not None:
        return JobState.TRANSPORT_ERROR, outcome.transport_error
    if outcome.returncode == 0:
        return JobState.SUCCEEDED, None
    if outcome.returncode is not None and outcome.returncode < 0:
        return JobState.FAILED, f"node script killed by signal {-outcome.returncode}"
    return JobState.FAILED, f"node script exited with status {outcome.returncode}"

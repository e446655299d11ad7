"""The state of one ``Scheduler.run``: queues, slots, handles, deadlines, and each job's verdict.

An attempt that ends is judged here: the host's health is updated (:mod:`.hosthealth`: a
transport failure pauses the host, a probe that answers resumes it), and a retried job
(:mod:`.retry`) goes back to the front of its host's queue, or, a job without a fixed host, of
the host-less jobs (to a healthy host). A final verdict may stop the batch (:mod:`.halt`).

Touched only by the thread that holds the scheduler's processing role (see
:mod:`lofarexec.run.scheduler` for the data flow), so it takes no locks of its own.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lofarexec.backend import JobHandle, LaunchRequest, Outcome
from lofarexec.errors import JobListError, LofarexecError
from lofarexec.job import ComputeJob, JobResult, JobState
from lofarexec.run.attempt import AttemptReport, time_left, verdict
from lofarexec.run.hosthealth import HostHealth
from lofarexec.run.placement import HostPool
from lofarexec.run.retry import host_failed

if TYPE_CHECKING:
    from lofarexec.run.scheduler import Scheduler

#: After a kill, how long to wait for a backend to report before giving up on a job.
KILL_REPORT_TIMEOUT = 10.0
# The scheduler's logger (documented for observer failures), whichever module writes to it.
_log = logging.getLogger("lofarexec.run.scheduler")


class Batch:
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
        self.retry = scheduler.retry
        self.health = HostHealth(self.retry.delay, scheduler.host_failures,
                                 scheduler.host_down_after)
        self.probes: list[tuple[float, str]] = []
        """When paused hosts are probed again (a heap, beside the jobs' deadlines)."""
        self.pool_jobs: set[int] = set()
        self.unprepared: set[int] = set()
        self.attempts: dict[int, AttemptReport] = {}
        """The report function of each running job's attempt (its deadline, its start)."""
        self.launching: dict[int, Callable[[Outcome], None]] = {}
        """Starts made outside the processing role whose handle has not come back: the
        attempt's report function tells its handle from an earlier attempt's."""
        self.failed = 0
        self.halt_limit = scheduler.halt.limit(len(jobs))
        self.halted: str | None = None
        backend_name = scheduler.backend.name
        self.open_jobs: deque[int] = deque()
        self.pool = HostPool(scheduler.pool, self.running_on, self.takes_open_job)
        for index, job in enumerate(jobs):
            job.id = index
            if index in scheduler.done_before:
                continue  # ended in an earlier run (--resume): its results are already set
            job.results = JobResult.pending(job.host, backend_name)
            if job.host is None:
                self.open_jobs.append(index)
                self.pool_jobs.add(index)
            else:
                self.queues.setdefault(job.host, deque()).append(index)
        if self.open_jobs and not scheduler.pool:
            raise JobListError(
                f"job {self.open_jobs[0]} has no host and the run has no host list: give each "
                "job a host, set [cluster] hosts, or run inside an allocation "
                "($SLURM_JOB_NODELIST, $PBS_NODEFILE)")

    @property
    def running(self) -> int:
        return len(self.handles)

    # -- starting ------------------------------------------------------------------------------
    def fill_all(self) -> None:
        for host in list(self.queues):
            self.fill(host)
        self.place_open_jobs()
        self.check_finished()

    def check_finished(self) -> None:
        """Finished: nothing runs and nothing waits (queued jobs of a paused host wait)."""
        if not self.handles:
            self.finished = not self.open_jobs and not any(self.queues.values())
            if self.finished:  # dicts keep their largest size: give back the run's peak
                self.handles, self.attempts = {}, {}

    def fill(self, host: str) -> None:
        """Start queued jobs of ``host`` while it has free slots (and the total allows)."""
        pending = self.queues.get(host)
        limit = self.scheduler.limits.for_host(host)
        total = self.scheduler.limits.total
        health = self.health
        while pending and (limit is None or self.running_on.get(host, 0) < limit):
            if self.killed_reason is not None or self.halted is not None:
                return
            if (health.down or health.quarantined) and not health.accepts(host):
                return
            if total is not None and self.running >= total:
                if host not in self.waiting_for_total:
                    self.waiting_for_total.append(host)
                return
            self.start(pending.popleft(), host)
        if pending is not None and not pending:
            del self.queues[host]  # an empty deque is ~600 bytes: 10,000 hosts, 6 MB

    def takes_open_job(self, host: str) -> bool:
        """Whether ``host`` may start a host-less job now: room under its own limit (the total
        apart) and no queued job of its own."""
        limit = self.scheduler.limits.for_host(host)
        return ((limit is None or self.running_on.get(host, 0) < limit)
                and not self.queues.get(host) and self.health.accepts(host))

    def place_open_jobs(self) -> None:
        """Start jobs without a host on the least-loaded pool hosts that have room.

        A host's own queue goes first: jobs placed by data locality are never pushed back.
        """
        total = self.scheduler.limits.total
        while self.open_jobs and self.killed_reason is None and self.halted is None:
            if total is not None and self.running >= total:
                return
            host = self.pool.least_loaded()
            if host is None:
                return
            index = self.open_jobs.popleft()
            self.jobs[index].host = host
            self.start(index, host)
            self.pool.update(host)

    def start(self, index: int, host: str) -> None:
        scheduler = self.scheduler
        job = self.jobs[index]
        job.results.start(host, time.time())
        if self.health.down:  # a paused host's job is its probe
            self.health.started(host, index)
        self.running_on[host] = self.running_on.get(host, 0) + 1
        self.handles[index] = None  # counted as running before the backend may report
        self.notify("job_started", job)
        report = self.attempts[index] = AttemptReport(scheduler.deliver, index)
        try:
            request = scheduler.prepare(job)
        except Exception as exc:  # one job's failure to prepare must not stop the run
            _log.exception("preparing job %d on %s failed", index, host)
            self.unprepared.add(index)  # not the host's fault: no pause, no retry
            report(Outcome(None, transport_error=f"could not start: {exc}"))
            return
        if scheduler.backend.parallel_start:
            self.to_launch.append((index, request, report))  # started once the role is given up
            self.launching[index] = report
            return
        handle = self.launch(index, request, report)
        if index in self.handles:  # not already reported (a report is processed after us)
            self.handles[index] = handle
            if job.timeout is not None or scheduler.job_timeout is not None:
                self.time_from_now(index)

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

    def on_launched(self, index: int, handle: JobHandle | None,
                    report: Callable[[Outcome], None]) -> None:
        """A start made outside the processing role has its handle: keep it, or use it at once
        if the job was killed (or timed out) in the meantime."""
        if self.launching.get(index) is not report:
            return  # an earlier attempt's, come after it ended (the job runs again)
        del self.launching[index]
        if handle is None or index not in self.handles:
            return  # it could not start, or it has ended already
        self.handles[index] = handle
        if index in self.fates:
            handle.kill()
        else:
            self.time_from_now(index)

    def time_from_now(self, index: int) -> None:
        """The backend has the job started: its time limit, if it has one, counts from now
        (a start that only queued it is checked again then: see
        :func:`~lofarexec.run.attempt.time_left`)."""
        timeout = self.timeout(index)
        if timeout is not None:
            self.arm(self.attempts[index], time.monotonic() + timeout)

    def timeout(self, index: int) -> float | None:
        """The job's time limit: its own, else ``[remote] job_timeout``."""
        timeout = self.jobs[index].timeout
        return timeout if timeout is not None else self.scheduler.job_timeout

    def arm(self, attempt: AttemptReport, deadline: float) -> None:
        """Check ``attempt`` at ``deadline`` (instead of any earlier moment it was given)."""
        attempt.deadline = deadline
        self.deadline_moved |= not self.deadlines or deadline < self.deadlines[0][0]
        heapq.heappush(self.deadlines, (deadline, attempt.index))

    # -- ending ----------------------------------------------------------------------------------
    def on_report(self, index: int, outcome: Outcome) -> None:
        if index not in self.handles:
            return  # reported twice, or after we gave up waiting for it: keep the first verdict
        del self.handles[index]
        del self.attempts[index]
        job = self.jobs[index]
        host = str(job.host)
        self.running_on[host] -= 1
        fate = self.fates.pop(index, None)
        if fate is not None or index in self.unprepared or self.killed_reason is not None:
            self.record(job, outcome, fate)
        elif ((outcome.transport_error is None and not self.health.down
               and outcome.returncode not in self.retry.retry_exit_codes)  # judge's answer
              or not self.judge(index, job, host, outcome)):
            self.record(job, outcome, None)
        if self.killed_reason is None and self.halted is None:
            self.fill(host)
            if self.waiting_for_total:
                self.fill_waiting_hosts()
            if self.open_jobs:
                self.pool.update(host)
                self.place_open_jobs()
        self.check_finished()

    def judge(self, index: int, job: ComputeJob, host: str, outcome: Outcome) -> bool:
        """Keep the host's health; True if the job goes back to wait for another attempt, or
        ended here (with its quarantined host's reason)."""
        failed = host_failed(outcome)
        if failed and host not in self.health.quarantined:
            wait = self.health.failed(host, index, outcome.transport_error, time.monotonic())
            if wait is not None:
                _log.warning("host %s paused after a transport failure (%s): its jobs wait; "
                             "trying it again in %.1f s", host, outcome.transport_error, wait)
                heapq.heappush(self.probes, (time.monotonic() + wait, host))
                self.deadline_moved = True
            elif host in self.health.quarantined:
                self.quarantine(host)
        elif not failed and self.health.answered(host, index):
            _log.warning("host %s answers again: its jobs resume", host)
        pool_job = index in self.pool_jobs
        if failed and host in self.health.quarantined:
            if not pool_job or not self.retry.retries_outcome(job, outcome):
                reason = self.health.quarantined[host]
                self.record(job, dataclasses.replace(outcome, transport_error=reason), None)
                return True
        if self.halted is not None or not self.retry.retries_outcome(job, outcome):
            return False
        state, reason = verdict(outcome, None, None)
        note = f"attempt {job.results['attempts']} {state.value}: {reason}"
        job.results.add_reason(note)
        _log.warning("job %s on %s: %s; it runs again", job.id, host, note)
        if pool_job:
            job.host = None
            self.open_jobs.appendleft(index)
        else:
            self.queues.setdefault(host, deque()).appendleft(index)
        return True

    def quarantine(self, host: str) -> None:
        """``host`` is given up: its queued jobs end with the reason; host-less ones go on."""
        reason = self.health.quarantined[host]
        _log.warning("%s; its queued jobs end as transport_error", reason)
        lost = Outcome(None, transport_error=reason)
        pending = self.queues.get(host)
        while pending:
            self.record(self.jobs[pending.popleft()], lost, None)
        pool = set(self.scheduler.pool)
        if self.open_jobs and pool and pool <= set(self.health.quarantined):
            lost = Outcome(None, transport_error=f"every host of the pool is quarantined; {reason}")
            while self.open_jobs:
                self.record(self.jobs[self.open_jobs.popleft()], lost, None)

    def record(self, job: ComputeJob, outcome: Outcome, fate: JobState | None) -> None:
        state, reason = verdict(outcome, fate, self.killed_reason)
        job.results.setdefault("start_time", time.time())  # never started: a quarantined host
        job.results.finish(state, reason, returncode=outcome.returncode, output=outcome.output,
                           errors=outcome.errors, now=time.time())
        if state is not JobState.SUCCEEDED:
            self.scheduler.error.set()
        self.notify("job_finished", job)
        if state is not JobState.SUCCEEDED and fate is not JobState.KILLED:
            self.failed += 1
            if (self.halt_limit is not None and self.failed >= self.halt_limit
                    and self.killed_reason is None and self.halted is None):
                self.halt(f"job {job.id} on {job.host} {state.value}; {self.failed} job"
                          f"{'s' if self.failed != 1 else ''} did not succeed "
                          f"(halt = {self.scheduler.halt})")

    def halt(self, reason: str) -> None:
        """The halt limit is reached: ``now`` kills the running jobs, ``soon`` lets them end."""
        if self.scheduler.halt.mode == "now":
            self.on_kill(reason, external=False)
            return
        self.halted = reason
        _log.warning("run halting (%s): no new job starts; running ones finish", reason)
        self.drop_waiting(reason)

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
        due = [timers[0][0] for timers in (self.deadlines, self.probes) if timers]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def on_deadlines(self) -> None:
        now = time.monotonic()
        while self.probes and self.probes[0][0] <= now:
            _, host = heapq.heappop(self.probes)
            self.health.probe_due(host)
            if self.killed_reason is None and self.halted is None:
                self.fill(host)
                self.pool.update(host)
                self.place_open_jobs()
        while self.deadlines and self.deadlines[0][0] <= now:
            due, index = heapq.heappop(self.deadlines)
            attempt = self.attempts.get(index)
            if attempt is None or attempt.deadline != due:
                continue  # it ended, or this is an earlier attempt's (or moment's)
            attempt.deadline = None
            if self.killed_reason is not None or index in self.fates:
                self.abandon(index)  # a kill that the backend never confirmed
                continue
            later = time_left(self.handles[index], attempt, self.timeout(index), now)
            if later is not None:
                self.arm(attempt, later)
                continue
            self.fates[index] = JobState.TIMED_OUT
            self.kill_one(index)
            self.arm(attempt, now + KILL_REPORT_TIMEOUT)

    def on_kill(self, reason: str, external: bool = True) -> None:
        """Stop the batch; ``external`` (a signal, the kill switch) makes ``run`` raise."""
        if self.killed_reason is not None:
            return
        self.killed_reason = reason
        self.quit = external
        self.scheduler.error.set()
        self.drop_waiting(reason)
        self.deadlines = []
        deadline = time.monotonic() + KILL_REPORT_TIMEOUT
        for index in self.handles:
            self.arm(self.attempts[index], deadline)
        self.deadline_moved = True
        for index in list(self.handles):
            self.fates.setdefault(index, JobState.KILLED)
            self.kill_one(index)
        if not self.handles:
            self.finished = True

    def drop_waiting(self, reason: str) -> None:
        """End every job that waits to start as ``not_started``."""
        self.probes.clear()
        for pending in (*self.queues.values(), self.open_jobs):
            while pending:
                self.mark_not_started(self.jobs[pending.popleft()], reason)

    def kill_one(self, index: int) -> None:
        handle = self.handles.get(index)
        if handle is not None:
            handle.kill()

    def abandon(self, index: int) -> None:
        """The backend did not confirm a kill in time: record the job as killed and move on."""
        lost = Outcome(None, transport_error="no report from the backend after kill")
        self.on_report(index, lost)

    def mark_not_started(self, job: ComputeJob, reason: str) -> None:
        job.results.stopped(f"run stopped ({reason}) before it started")
        self.notify("job_finished", job)


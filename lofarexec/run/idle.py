"""``[remote] idle_timeout``: a hung node is visible even without a job time limit.

A running attempt that sends nothing over its log channel (no record, no output sent to the
master) for ``idle_timeout`` seconds is named in one warning (job, host, seconds), once per
attempt; with ``idle_timeout = N, kill`` it is also ended, as ``timed_out`` with the reason
``idle for N s``. What counts as activity is what the run's
:class:`~lofarexec.channel.logserver.LogServer` received from the job (its byte count): no
built-in backend streams a job's stdout to the master while it runs, so output a node only
prints (not logs) is not seen until the job ends.

:class:`IdleWatch` sits between the scheduler and the hook relay as the scheduler's observer:
``job_started`` starts the clock of an attempt, ``job_finished`` stops it (and words the reason
of a job it ended). One thread looks at the clocks, sleeping until the next one can expire.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from lofarexec.config import PipelineConfig
from lofarexec.config.values import parse_positive_float
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob, JobState

__all__ = ["IdleLimit", "IdleWatch", "idle_limit", "parse_idle_timeout"]

#: How often a job's byte count is looked at when its clock has not expired: activity moves a
#: clock only when seen, so a limit is honoured to within this much.
CHECK_INTERVAL = 0.5


@dataclasses.dataclass(frozen=True)
class IdleLimit:
    """Seconds of silence allowed, and whether a silent job is killed or only named."""

    seconds: float
    kill: bool = False

    def __str__(self) -> str:
        return f"{self.seconds:g}" + (", kill" if self.kill else "")


def parse_idle_timeout(text: str) -> IdleLimit:
    """``N`` (warn) or ``N, kill`` (warn and kill); ``ValueError`` saying what to write."""
    seconds, _, action = (part.strip().lower() for part in text.partition(","))
    if action not in ("", "kill", "warn"):
        raise ValueError(f"has {action!r} after the seconds; write 'N' (warn) or 'N, kill'")
    return IdleLimit(parse_positive_float(seconds), kill=action == "kill")


def idle_limit(config: PipelineConfig) -> IdleLimit | None:
    """The run's ``[remote] idle_timeout``; None when absent (no watch)."""
    text = config.get("remote", "idle_timeout", fallback=None)
    if text is None or not text.strip():
        return None
    try:
        return parse_idle_timeout(text)
    except ValueError as exc:
        raise ConfigError(f"value {text!r} {exc}", filename=str(config.path), section="remote",
                          key="idle_timeout") from exc


class Observer(Protocol):
    def job_started(self, job: ComputeJob) -> None: ...

    def job_finished(self, job: ComputeJob) -> None: ...


class Activity(Protocol):
    def bytes_received(self, job_id: int) -> int: ...


@dataclasses.dataclass
class _Clock:
    job: ComputeJob
    heard: int
    since: float
    warned: bool = False


class IdleWatch:
    """The scheduler's observer in front of ``observer``; with a ``limit``, a thread (started
    and stopped by ``with``) warns about, and with ``kill`` expires, silent attempts.

    ``expire(job_id, reason)`` ends a running job as ``timed_out`` (the scheduler's
    :meth:`~lofarexec.run.scheduler.Scheduler.expire`); set it before the batch starts.
    """

    def __init__(self, observer: Observer, limit: IdleLimit | None, activity: Activity,
                 logger: logging.Logger) -> None:
        self.observer = observer
        self.limit = limit
        self.activity = activity
        self.logger = logger
        self.expire: Callable[[int, str], None] | None = None
        self._clocks: dict[int, _Clock] = {}
        self._expired: set[int] = set()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the observer ----------------------------------------------------------------------------
    def job_started(self, job: ComputeJob) -> None:
        if self.limit is not None and job.id is not None:
            with self._changed:
                self._clocks[job.id] = _Clock(job, self._heard(job.id), time.monotonic())
                self._changed.notify()
        self.observer.job_started(job)

    def job_finished(self, job: ComputeJob) -> None:
        with self._changed:
            self._clocks.pop(job.id, None)  # type: ignore[arg-type]
            expired = job.id in self._expired
        if expired and job.results.get("state") == JobState.TIMED_OUT.value:
            job.results["reason"] = self._reason()
        self.observer.job_finished(job)

    # -- the thread ------------------------------------------------------------------------------
    def __enter__(self) -> IdleWatch:
        if self.limit is not None:
            self._thread = threading.Thread(target=self._watch, name="lofarexec-idle-watch",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _heard(self, job_id: int) -> int:
        """Bytes heard from the job so far; 0 before the log server has registered it (the
        scheduler announces a start before it prepares the launch)."""
        try:
            return self.activity.bytes_received(job_id)
        except KeyError:
            return 0

    def _reason(self) -> str:
        assert self.limit is not None
        return f"idle for {self.limit.seconds:g} s"

    def _watch(self) -> None:
        assert self.limit is not None
        while True:
            with self._changed:
                if self._stopping:
                    return
                wait, silent = self._check()
                if not silent:
                    self._changed.wait(wait)
                    continue
            for job_id, clock in silent:  # unlocked: expiring may end and start jobs here
                self._silent(job_id, clock)

    def _check(self) -> tuple[float | None, list[tuple[int, _Clock]]]:
        """Look at every clock (the lock held): the seconds until the next look (None when
        no clock runs: a start wakes the thread), and the attempts silent for the limit."""
        assert self.limit is not None
        now = time.monotonic()
        next_look: float | None = None
        silent = []
        for job_id, clock in self._clocks.items():
            if clock.warned:
                continue  # once per attempt
            heard = self._heard(job_id)
            if heard != clock.heard:
                clock.heard, clock.since = heard, now
            left = self.limit.seconds - (now - clock.since)
            if left <= 0:
                clock.warned = True
                silent.append((job_id, clock))
                if self.limit.kill and self.expire is not None:
                    self._expired.add(job_id)
                continue
            wait = min(left, CHECK_INTERVAL)
            next_look = wait if next_look is None else min(next_look, wait)
        return next_look, silent

    def _silent(self, job_id: int, clock: _Clock) -> None:
        assert self.limit is not None
        killing = job_id in self._expired
        self.logger.warning("job %d on %s: no log record or output for %g s (idle_timeout)%s",
                            job_id, clock.job.host, self.limit.seconds,
                            "; killing it" if killing else "")
        if killing and self.expire is not None:
            self.expire(job_id, self._reason())

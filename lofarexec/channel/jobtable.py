"""The jobs a run's log server lets in: one secret token per job, and its open connections.

The runner's threads register, forget and wait for jobs; the serving thread admits and
releases connections. One lock guards the table, and one condition wakes whoever waits for a
job's connections to close.

A job is in the table from its launch to its end, not for the whole run: a job whose node was
heard from and closed is forgotten as it ends; one that ended unheard, or with a connection
that has since closed, a :data:`LATE_HELLO_SECONDS` later (a node killed as it connected may
have its hello and last records still on the way); one whose connection is still open when the
job ends (or opens in that time) stays until the run's end waits for it (:meth:`JobTable.ended`).
"""

from __future__ import annotations

import collections
import hmac
import os
import threading
import time
from dataclasses import dataclass

from lofarexec.errors import ProtocolError

#: How long the token of a job that ended without an open channel stays valid after its end.
LATE_HELLO_SECONDS = 2.0
_TOKEN_BYTES = 16
_TOKENS_READ = 256  # tokens' worth of random bytes read at a time


@dataclass(eq=False, slots=True)
class RegisteredJob:
    """One job as the log server knows it; counters accumulate over the job's attempts."""

    host: str
    token: str
    records: int = 0
    received_bytes: int = 0
    """Bytes read from its authenticated connections: how a waiter tells progress from a stall."""
    exited: bool = False
    said_hello: bool = False
    """Whether the current attempt's node has been admitted (a retry starts unheard again)."""
    connections: set[object] | None = None
    """The authenticated connections now open (None before the first): a set, so releasing
    one twice cannot miscount."""


class JobTable:
    """The registered jobs of one run, by job id; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[int, RegisteredJob] = {}
        self._retiring: collections.deque[tuple[float, int, RegisteredJob]] = collections.deque()
        """Ended jobs kept for a late hello, oldest first: (when to forget, id, entry)."""
        self.late_hello_seconds = LATE_HELLO_SECONDS
        self._entropy = b""
        self._entropy_used = 0

    def register(self, job_id: int, host: str) -> str:
        """Let job ``job_id`` on ``host`` in; return its fresh secret token (a retry gets a
        new one, and its exited and hello marks are cleared)."""
        with self._lock:
            token = self._token()
            job = self._jobs.get(job_id)
            if job is None:
                self._jobs[job_id] = RegisteredJob(host=host, token=token)
            else:
                job.host, job.token, job.exited, job.said_hello = host, token, False, False
        return token

    def _token(self) -> str:
        """A fresh secret token (the lock is held): 16 bytes of ``os.urandom``, as
        ``secrets.token_hex(16)`` gives, read for many tokens at once: a system call per job
        lets the interpreter lock go to another thread mid-start."""
        if self._entropy_used >= len(self._entropy):
            self._entropy, self._entropy_used = os.urandom(_TOKEN_BYTES * _TOKENS_READ), 0
        start = self._entropy_used
        self._entropy_used = start + _TOKEN_BYTES
        return self._entropy[start:start + _TOKEN_BYTES].hex()

    def forget(self, job_id: int) -> None:
        """Refuse the job's token from now on; safe for an unknown or forgotten id. Connections
        already admitted are not touched (see :meth:`LogServer.forget_job`)."""
        with self._lock:
            if self._jobs.pop(job_id, None) is not None:
                self._changed.notify_all()

    def mark_exited(self, job_id: int) -> None:
        with self._lock:
            self._get(job_id).exited = True
            self._changed.notify_all()

    def end(self, job_id: int) -> tuple[bool, bool]:
        """Mark the job exited (its final state is known); forget it at once if its node was
        heard from and no connection of it is open, else retire it later (module docstring).
        Returns (said hello, forgotten): one lock for what the runner asks of every job that
        ends."""
        now = time.monotonic()
        with self._lock:
            self._retire(now)
            job = self._get(job_id)
            job.exited = True
            forget = bool(job.records) and not job.connections
            if forget:
                del self._jobs[job_id]
            elif not job.connections:
                self._retiring.append((now + self.late_hello_seconds, job_id, job))
            self._changed.notify_all()
            return job.said_hello, forget

    def ended(self) -> list[int]:
        """The jobs that have ended and are still here: a channel open, or a hello due."""
        with self._lock:
            self._retire(time.monotonic())
            return [job_id for job_id, job in self._jobs.items() if job.exited]

    def _retire(self, now: float) -> None:
        """Forget the jobs whose late-hello time is over and that have no open channel (a
        retried job's entry is running again: left alone). The lock is held."""
        retiring = self._retiring
        while retiring and retiring[0][0] <= now:
            _, job_id, job = retiring.popleft()
            if self._jobs.get(job_id) is job and job.exited and not job.connections:
                del self._jobs[job_id]

    def records(self, job_id: int) -> int:
        with self._lock:
            return self._get(job_id).records

    def said_hello(self, job_id: int) -> bool:
        with self._lock:
            return self._get(job_id).said_hello

    def waiting_count(self) -> int:
        """Jobs registered, not ended and not connected: each will want a descriptor."""
        with self._lock:
            return sum(1 for job in self._jobs.values()
                       if not job.exited and not job.connections and not job.records)

    def received_bytes(self, job_id: int) -> int:
        with self._lock:
            return self._get(job_id).received_bytes

    def wait_closed(self, job_id: int, timeout: float | None) -> bool:
        """True once the job has exited and none of its connections is open; False after
        ``timeout`` seconds or when the job is forgotten meanwhile."""
        with self._lock:
            job = self._get(job_id)  # KeyError now rather than a silent wait

            def settled() -> bool:
                forgotten = self._jobs.get(job_id) is not job
                return forgotten or (job.exited and not job.connections)

            return self._changed.wait_for(settled, timeout) and self._jobs.get(job_id) is job

    # -- the serving thread's side ----------------------------------------------------------------

    def admit(self, job_id: int, token: str, connection: object) -> RegisteredJob:
        """Count ``connection`` as the job's, if ``token`` is the job's; else ProtocolError."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ProtocolError(f"hello for unknown job {job_id}")
            if not hmac.compare_digest(token.encode("utf-8"), job.token.encode("utf-8")):
                raise ProtocolError(f"wrong token for job {job_id} on {job.host}")
            if job.connections is None:
                job.connections = set()
            job.connections.add(connection)
            job.said_hello = True
            return job

    def count_record(self, job: RegisteredJob, count: int = 1) -> None:
        with self._lock:
            job.records += count

    def count_bytes(self, job: RegisteredJob, count: int) -> None:
        with self._lock:
            job.received_bytes += count

    def release(self, job: RegisteredJob, connection: object) -> None:
        """The connection is closed: it no longer keeps the job's waiters waiting."""
        with self._lock:
            if job.connections is not None:
                job.connections.discard(connection)
            self._changed.notify_all()

    def _get(self, job_id: int) -> RegisteredJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"job {job_id} is not registered with the log server") from None

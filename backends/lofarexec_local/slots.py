"""Local jobs each watched by a worker thread of its own, as a plain loop of workers runs them.

For the ``local`` backend's short jobs, what decides the pace is how soon a finished job's slot
holds the next one. A worker that watches one job at a time (its stdout, stderr and pidfd, in a
``poll`` of its own) sees the end at once, reports it, and, since the scheduler starts the
host's next job from the thread that reported (``parallel_start``), watches that next job
itself: no hand-off between threads, no shared event loop whose one thread serves every job in
turn. A job started from any other thread goes to an idle worker, or a new one up to
``max_workers``; beyond that, to the shared :class:`~lofarexec.transport.process.ProcessLauncher`,
so a run with thousands of jobs at once does not make thousands of threads.

The guarantees are the launcher's: each child in a session of its own; its stdout and stderr
drained as they come (64 KiB tails kept); whatever it left in its process group killed before
it is reaped; a kill TERMs the group and KILLs it after ``kill_grace`` (timed by the launcher's
one timer heap, never a thread per kill); pipes held open past the exit by an escaped process
are given up after ``DRAIN_GRACE``; ``close`` kills what still runs and waits for every report.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
from queue import SimpleQueue

from lofarexec.backend import JobHandle, NothingToKill, Outcome, Report
from lofarexec.transport import (
    DRAIN_GRACE,
    ExecEnvironment,
    ProcessLauncher,
    keep_tail,
    signal_group,
    spawn,
)

_log = logging.getLogger("lofarexec.local")
_READ_CHUNK = 65536


class _Job:
    __slots__ = ("err", "exited", "killed", "lock", "out", "pid", "report")

    def __init__(self, pid: int, out: int, err: int, report: Report) -> None:
        self.pid = pid
        self.out = out
        self.err = err
        self.report = report
        self.lock = threading.Lock()
        self.exited = False
        self.killed = False


class _Handle:
    __slots__ = ("_job", "_slots")

    def __init__(self, slots: SlotWatchers, job: _Job) -> None:
        self._slots = slots
        self._job = job

    def kill(self) -> None:
        self._slots.kill(self._job)


class SlotWatchers:
    """Starts local jobs and reports each one's end, one worker thread per running job."""

    def __init__(self, fallback: ProcessLauncher, *, kill_grace: float,
                 max_workers: int = 64, name: str = "local-job") -> None:
        self._fallback = fallback
        self.kill_grace = kill_grace
        self._max_workers = max_workers
        self._name = name
        self._lock = threading.Lock()
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._idle = 0  # workers waiting on the queue, less the jobs already put there for them
        self._workers: list[threading.Thread] = []
        self._running: set[_Job] = set()
        self._closing = False
        self._here = threading.local()  # in a worker: a one-item list, its next job or None
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def launch(self, argv: tuple[str, ...], report: Report, env: ExecEnvironment) -> JobHandle:
        """Start ``argv`` now (in this thread); its report comes from the worker watching it."""
        own = getattr(self._here, "slot", None)
        with self._lock:
            if self._closing:
                where = "fallback"
            elif own is not None and own[0] is None:
                where = "here"
            elif self._idle > 0:
                self._idle -= 1
                where = "queue"
            elif len(self._workers) < self._max_workers:
                where = "new"
            else:
                where = "fallback"
        if where == "fallback":
            return self._fallback.launch(argv, report, env=env)
        job = self._spawn(argv, report, env)
        if job is None:
            if where == "queue":
                with self._lock:
                    self._idle += 1  # not used after all
            return NothingToKill()
        if where == "here":
            own[0] = job  # type: ignore[index]
        elif where == "queue":
            self._queue.put(job)
        else:
            worker = threading.Thread(target=self._work, args=(job,), daemon=True,
                                      name=f"{self._name}-{len(self._workers) + 1}")
            with self._lock:
                self._workers.append(worker)
            worker.start()
        return _Handle(self, job)

    def kill(self, job: _Job) -> None:
        """TERM the job's process group now, KILL it after the grace period."""
        with job.lock:
            if job.exited or job.killed:
                return
            job.killed = True
            signal_group(job.pid, signal.SIGTERM)
        self._fallback.call_later(self.kill_grace, lambda: self._force_kill(job))

    def close(self) -> None:
        """Kill whatever still runs, wait for every report, stop the workers; safe twice."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            running, workers = list(self._running), list(self._workers)
        for job in running:
            self.kill(job)
        for _ in workers:
            self._queue.put(None)
        for worker in workers:  # each job is reaped: a KILL still due will find it exited
            worker.join()
        os.close(self._devnull)

    # -- helpers ---------------------------------------------------------------------------
    def _spawn(self, argv: tuple[str, ...], report: Report, env: ExecEnvironment) -> _Job | None:
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            pid, popen = spawn(argv, env=env, stdin=self._devnull, stdout=out_write,
                               stderr=err_write)
        except BaseException as exc:
            for fd in (out_read, err_read):
                os.close(fd)
            if not isinstance(exc, OSError):
                raise  # a bad argument (a NUL byte): the caller's error, not a leak
            reason = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            report(Outcome(None, transport_error=reason))
            return None
        finally:
            os.close(out_write)
            os.close(err_write)
        if popen is not None:  # spawn's fallback: we reap it, so it must not
            popen.returncode = 0
        job = _Job(pid, out_read, err_read, report)
        with self._lock:
            self._running.add(job)
        return job

    @staticmethod
    def _force_kill(job: _Job) -> None:
        with job.lock:
            if not job.exited:
                signal_group(job.pid, signal.SIGKILL)

    def _work(self, job: _Job | None) -> None:
        slot: list[_Job | None] = [None]
        self._here.slot = slot
        poller = select.poll()  # empty between jobs
        while job is not None:
            self._watch(job, poller)
            job, slot[0] = slot[0], None
            if job is None:
                with self._lock:
                    if self._closing:
                        return
                    self._idle += 1
                job = self._queue.get()

    def _watch(self, job: _Job, poller: select.poll) -> None:
        """Drain the job's output until it has exited and its pipes are closed; report it."""
        tails = {job.out: bytearray(), job.err: bytearray()}
        pidfd = os.pidfd_open(job.pid)
        for fd in (job.out, job.err, pidfd):
            poller.register(fd, select.POLLIN)
        open_streams = {job.out, job.err}
        returncode: int | None = None
        timeout: float | None = None
        while open_streams or returncode is None:
            events = poller.poll(None if timeout is None else timeout * 1000)
            if not events and returncode is not None:
                for fd in open_streams:  # something the job left outside its group holds
                    poller.unregister(fd)  # the pipes: give up on them
                break
            for fd, _ in events:
                if fd == pidfd:
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    returncode = self._reap(job)
                    timeout = DRAIN_GRACE
                    continue
                data = os.read(fd, _READ_CHUNK)
                if data:
                    keep_tail(tails[fd], data)
                else:
                    poller.unregister(fd)
                    open_streams.discard(fd)
        for fd in (job.out, job.err):
            os.close(fd)
        with self._lock:
            self._running.discard(job)
        outcome = Outcome(returncode, output=tails[job.out].decode("utf-8", errors="replace"),
                          errors=tails[job.err].decode("utf-8", errors="replace"))
        try:
            job.report(outcome)
        except Exception:  # a broken callback must not stop the worker
            _log.exception("report callback for pid %d failed", job.pid)

    @staticmethod
    def _reap(job: _Job) -> int:
        with job.lock:
            # The leader is a zombie now, so its pid (our process group id) cannot be reused
            # yet: kill what it left behind in its group before reaping it.
            signal_group(job.pid, signal.SIGKILL)
            _, status = os.waitpid(job.pid, 0)
            job.exited = True
        return os.waitstatus_to_exitcode(status)

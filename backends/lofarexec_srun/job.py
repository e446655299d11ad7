"""One job's life in the srun backend, and how its end is read.

A job moves ``queued -> launching -> running -> done`` (with ``backoff`` between failed
launches). Its input reaches srun through a named pipe (FIFO) that only the control node writes
to, given to srun as ``--input``::

    worker thread                       srun                       node (task 0)
    -------------                       ----                       -------------
    mkfifo F; spawn srun --input=F ---> allocation, step creation
    open(F, write) blocks ..........    open(F, read)              (launch complete: the
    write header, keep F open  -------> forwards to the task ----> wrapper reads env + token)
    (slot freed for the next launch)
    kill(): close F  -----------------> EOF to the task ---------> wrapper kills the node group
                                       exits after the task <----- "<marker> <status>" on stderr

Why a FIFO and not srun's stdin: killing srun (TERM, INT twice, HUP or QUIT alike) makes Slurm
SIGKILL the task, i.e. the wrapper, which then cannot kill the node it started in a session of
its own; under ``proctrack/pgid`` that node survives. End-of-file on the input instead lets the
wrapper do its TERM-then-KILL of the whole node group, as over ssh. A pipe on srun's stdin
would work as well, but only the FIFO can be closed by the backend while srun runs. The FIFO
also tells when the launch is complete: srun opens its input only once the allocation exists
and the step is being launched, which is what the launch cap counts.

A job killed while it launches gets no header at all, only EOF, so its wrapper starts nothing
and srun ends by itself. srun is signalled (TERM, which revokes a pending allocation cleanly)
only when it has not ended ``kill_grace`` + 3 s after the EOF, e.g. while it waits in the queue.

Retries: a launch is retried only when srun ended before taking the header from the FIFO: then
no task can have started the node (the wrapper starts nothing without a header), so running it
again cannot run a node twice. Anything after that is final.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lofarexec.backend import LaunchRequest, Outcome, Report
from lofarexec.transport import ProcessHandle, RemoteLaunch, TimerHeap

if TYPE_CHECKING:
    from lofarexec_srun import SrunBackend

QUEUED, LAUNCHING, BACKOFF, RUNNING, DONE = "queued", "launching", "backoff", "running", "done"
_MAX_HEADER = 65536  # the pipe's capacity: the header is written without ever blocking
_log = logging.getLogger("lofarexec.srun")


class SrunJob:
    """The handle of one job: :meth:`kill` works in every phase; the report comes once."""

    def __init__(self, backend: SrunBackend, request: LaunchRequest, launch: RemoteLaunch,
                 report: Report) -> None:
        self.backend = backend
        self.request = request
        self.launch = launch
        self._report = report
        self.lock = threading.Lock()
        self.phase = QUEUED
        self.kill_requested = False
        self.woken = threading.Event()  # cuts a backoff wait short on kill
        self.fifo: str | None = None
        self.unblocker: int | None = None  # our own read end: frees a worker blocked in open()
        self.writer: int | None = None
        self.process: ProcessHandle | None = None
        self.srun_done = threading.Event()
        self.srun_outcome: Outcome | None = None
        self.stale_file: str | None = None  # the empty file left in F's place by a kill

    # -- any thread ------------------------------------------------------------------------------
    def kill(self) -> None:
        """End the job: at once if queued, by EOF on its input if running (see module doc)."""
        with self.lock:
            if self.kill_requested or self.phase == DONE:
                return
            self.kill_requested = True
            self.woken.set()
            phase = self.phase
            if phase == LAUNCHING:
                self._unblock()
            writer, self.writer = self.writer, None
        if phase == QUEUED:
            self.finish(Outcome(None, transport_error="killed before srun was started"))
        elif writer is not None:
            os.close(writer)
            self.backend.alarms.call_later(self.backend.fallback_delay, self._force_kill)

    def finish(self, outcome: Outcome) -> None:
        """Report ``outcome`` unless the job has been reported already."""
        with self.lock:
            if self.phase == DONE:
                return
            self.phase = DONE
        self.backend.forget(self)
        self._report(outcome)

    # -- the launch worker -----------------------------------------------------------------------
    def run_launches(self) -> None:
        """In a launch worker: launch, retry failed launches with backoff, until running or done.

        A bug here must not lose the job's report (the pool would keep the exception silently).
        """
        try:
            self._run_launches()
        except Exception as exc:
            _log.exception("srun launch of job %d failed", self.request.job_id)
            self.finish(Outcome(None, transport_error=f"srun backend error: {exc!r}"))

    def _run_launches(self) -> None:
        settings = self.backend.settings
        for attempt in range(settings.launch_retries + 1):
            with self.lock:
                if self.kill_requested or self.phase == DONE:
                    break
                self.phase = LAUNCHING
            failure = self._attempt(attempt)
            if failure is None:
                return  # running: the srun exit callback reports
            if self.kill_requested:
                break
            if attempt == settings.launch_retries or failure.returncode is None:
                # None: srun itself could not be started, which a retry will not change
                self.finish(_launch_failed(failure, attempt + 1))
                return
            with self.lock:
                self.phase = BACKOFF
            self.woken.wait(settings.retry_backoff * 2 ** attempt)
        self.finish(Outcome(None, transport_error="killed before the node was started"))

    def _attempt(self, attempt: int) -> Outcome | None:
        """One srun launch; None once srun reads the header, else srun's outcome."""
        if len(self.launch.stdin) > _MAX_HEADER:
            return Outcome(None, transport_error="the job's environment is too large for srun")
        path = os.path.join(self.backend.fifo_directory, f"{self.request.job_id}.{attempt}")
        os.mkfifo(path, 0o600)
        with self.lock:
            if self.kill_requested:  # killed before F existed: nothing could unblock us later
                os.unlink(path)
                return Outcome(None, transport_error="killed before the node was started")
            self.fifo = path
            self.srun_done.clear()
        argv = self.backend.srun_argv(self.request, path, self.launch)
        with self.backend.launch_slot():
            self.process = self.backend.launcher.launch(argv, self._on_srun_exit,
                                                        env=self.backend.srun_environment)
            writer = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # until srun (or we) opens it
            started = self._hand_over(writer, path)
        if started:
            return None
        self.srun_done.wait()
        assert self.srun_outcome is not None
        return self.srun_outcome

    def _hand_over(self, writer: int, path: str) -> bool:
        """Give srun the header; True when the job is under way, False when srun ended first.

        Killed while launching, srun gets no header at all: F is swapped for an empty file
        (should srun open it later: it reads EOF at once) and our end is closed (should srun
        have it open: EOF too), so the wrapper starts nothing and srun ends as usual. srun is
        not signalled: after its step exists, a TERM or a missing input file can leave the
        allocation behind (seen with Slurm 22.05).
        """
        with self.lock:
            if self.unblocker is not None:
                os.close(self.unblocker)
                self.unblocker = None
            self.fifo = None
            # Once srun has ended, a reader can only be a copy of our unblocker that a process
            # being spawned by another thread holds until its exec: not srun.
            if self.srun_done.is_set():
                os.unlink(path)
                os.close(writer)
                return False
            if self.kill_requested:
                _swap_for_empty_file(path)
                self.stale_file = path
            elif _write(writer, self.launch.stdin):
                os.unlink(path)  # srun has it open
                self.phase = RUNNING
                self.writer = writer
                return True
            else:  # srun closed F again: it is ending, and its exit is reported soon
                os.unlink(path)
                os.close(writer)
                return False
            self.phase = RUNNING
        os.close(writer)
        self.backend.alarms.call_later(self.backend.fallback_delay, self._force_kill)
        return True

    # -- the process watcher's thread ----------------------------------------------------------
    def _on_srun_exit(self, seen: Outcome) -> None:
        with self.lock:
            self.srun_outcome = seen
            if self.phase != RUNNING:  # a launch that failed: the worker decides what next
                self._unblock()
                self.srun_done.set()
                return
            writer, self.writer = self.writer, None
        if writer is not None:
            os.close(writer)
        if self.stale_file is not None:
            os.unlink(self.stale_file)
        self.finish(node_outcome(self.launch, seen))

    def _unblock(self) -> None:
        """Open F for reading ourselves, so that a worker blocked opening it goes on (locked)."""
        if self.fifo is not None and self.unblocker is None:
            try:
                self.unblocker = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                pass  # the worker is past open() already

    def _force_kill(self) -> None:
        """The step did not end after EOF: TERM srun, which makes Slurm cancel the step."""
        if self.phase != DONE and self.process is not None:
            self.process.kill()


def _swap_for_empty_file(path: str) -> None:
    """Atomically replace the FIFO at ``path`` by an empty regular file."""
    empty = path + ".empty"
    os.close(os.open(empty, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    os.rename(empty, path)


def _write(fd: int, data: bytes) -> bool:
    """Write ``data`` (within the pipe's capacity); False when no reader has the pipe open."""
    try:
        os.write(fd, data)
    except BrokenPipeError:
        return False
    return True


def node_outcome(launch: RemoteLaunch, seen: Outcome) -> Outcome:
    """The node's outcome from what srun printed: trust the wrapper's status line (which
    :meth:`RemoteLaunch.node_outcome` finds among srun's own lines), never srun's status."""
    node = launch.node_outcome(seen.output, seen.errors)
    if node is not None:
        return node
    if seen.transport_error is not None:
        return seen
    if seen.returncode is not None and seen.returncode < 0:
        what = f"srun was killed by signal {-seen.returncode}"
    else:
        what = f"srun ended (status {seen.returncode}) without the node's exit status"
    return Outcome(None, transport_error=f"{what}: {_srun_lines(seen.errors)}",
                   output=seen.output, errors=seen.errors)


def _launch_failed(seen: Outcome, attempts: int) -> Outcome:
    if seen.transport_error is not None and seen.returncode is None and not seen.errors:
        reason = seen.transport_error
    else:
        reason = f"status {seen.returncode}: {_srun_lines(seen.errors)}"
    tries = "once" if attempts == 1 else f"{attempts} times"
    return Outcome(None, transport_error=f"srun could not launch the job (tried {tries}; "
                                         f"last {reason})", output=seen.output, errors=seen.errors)


def _srun_lines(text: str, count: int = 3) -> str:
    """srun's own last words (its lines start with 'srun:'), else the last lines at all."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    own = [line for line in lines if line.startswith(("srun:", "slurmstepd"))]
    return " | ".join((own or lines)[-count:]) or "no output"


class Alarms:
    """Calls due later, all from one thread (started on first use); :meth:`close` stops it."""

    def __init__(self) -> None:
        self._due: TimerHeap[Callable[[], None]] = TimerHeap()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        with self._changed:
            if self._closed:
                return
            self._due.add(delay, action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="srun-alarms", daemon=True)
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                due = self._due.pop_due()
                if not due:
                    self._changed.wait(self._due.next_timeout())
                    continue
                self._changed.release()
                try:
                    for action in due:
                        action()
                finally:
                    self._changed.acquire()

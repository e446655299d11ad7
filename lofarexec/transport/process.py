"""Local processes for subprocess-based transports, all watched by one thread.

Every transport that works by starting a program on the control node (``local`` runs the node
itself, ``ssh`` runs the OpenSSH client, ``mpirun``, ``srun``, ``cmdline`` their launchers) needs
the same things: start it in a session of its own, feed it a secret on stdin, drain its stdout
and stderr without deadlock however much it writes, see its exit the moment it happens, kill
its whole process group on demand (TERM, then KILL after a grace period), and leave nothing
behind. :class:`ProcessLauncher` does this for thousands of processes with one thread::

    launch() --spawn--> child (own session)
        |   registers in epoll: pidfd, stdout, stderr ----+
        v                                                 v
    kill() --killpg TERM--+                    watcher thread: epoll loop
                          +--> timer: killpg KILL         |
                                                          v
                                               report(Outcome) exactly once

``launch`` creates the child as ``subprocess.Popen`` would (:mod:`lofarexec.transport.execenv`,
with the environment encoded once per run) in the caller's thread, and registers the child's
descriptors with the epoll object directly (epoll is thread-safe), so starting a job costs no
hand-off between threads.
Waiting is on the kernel's pidfd and pipe readiness, never a polling sleep, so an exit is seen
at once. When the main process exits, anything it left in its process group is killed: a job's
processes do not outlive the job.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from lofarexec.backend import Outcome, Report
from lofarexec.transport.execenv import ExecEnvironment, spawn
from lofarexec.transport.timers import TimerHeap
from lofarexec.transport.wakeup import WakePipe

#: How much of each of stdout and stderr is kept per job (the tail), in bytes.
DEFAULT_OUTPUT_LIMIT = 64 * 1024
#: Seconds between TERM and KILL when a job is killed.
DEFAULT_KILL_GRACE = 1.0
#: Seconds to wait for the pipes to close after the main process has exited.
DRAIN_GRACE = 2.0
_READ_CHUNK = 65536
_MAX_STDIN = 65536
_log = logging.getLogger("lofarexec.transport.process")
_EXIT, _OUTPUT, _WAKE = 0, 1, 2


class _Child:
    """One launched process and what the watcher knows about it."""

    __slots__ = ("popen", "pid", "report", "pidfd", "out", "err", "stdin", "tails", "lock",
                 "exited", "killed", "finished", "returncode", "open_streams")

    # Descriptor numbers are reused as soon as they are closed, so a child tracks which of its
    # own streams are still open (``open_streams``) rather than asking the shared table.

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None, report: Report,
                 out: int, err: int, stdin: int | None):
        self.popen = popen  # (spawn's fallback) kept to set its returncode once we have reaped it
        self.pid = pid
        self.report = report
        self.pidfd = os.pidfd_open(pid)
        self.out = out
        self.err = err
        self.stdin = stdin
        self.tails = {out: bytearray(), err: bytearray()}
        self.open_streams = {out, err}
        self.lock = threading.Lock()
        self.exited = False
        self.killed = False
        self.finished = False
        self.returncode: int | None = None


class ProcessHandle:
    """The handle a transport returns for a launched process; ``kill()`` ends its group."""

    def __init__(self, launcher: ProcessLauncher, child: _Child | None) -> None:
        self._launcher = launcher
        self._child = child

    @property
    def pid(self) -> int | None:
        """The process id, or ``None`` when the launch failed."""
        return self._child.pid if self._child is not None else None

    def kill(self) -> None:
        if self._child is not None:
            self._launcher.kill(self._child)


class ProcessLauncher:
    """Starts processes and reports each one's end through its ``report`` callback.

    Create one per backend instance, ``start()`` it in ``Backend.open`` and ``close()`` it in
    ``Backend.close``. ``launch`` and ``kill`` may be called from any thread.
    """

    def __init__(
        self,
        *,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        kill_grace: float = DEFAULT_KILL_GRACE,
        name: str = "lofarexec-processes",
    ) -> None:
        self.output_limit = output_limit
        self.kill_grace = kill_grace
        self._name = name
        self._epoll = select.epoll()
        # One /dev/null for the stdin of every child without input (each child gets a copy).
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._waker = WakePipe()
        self._watched: dict[int, tuple[int, _Child | None]] = {self._waker.fileno(): (_WAKE, None)}
        self._epoll.register(self._waker.fileno(), select.EPOLLIN)
        self._pending: deque[Callable[[], None]] = deque()
        self._timers: TimerHeap[Callable[[], None]] = TimerHeap()
        self._children: set[_Child] = set()
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Kill whatever still runs, wait for their reports, stop the thread. Safe twice."""
        if self._thread is None or self._closing:
            return
        self._call_soon(self._begin_close)
        self._thread.join()
        self._epoll.close()
        os.close(self._devnull)
        self._waker.close()

    # -- API -----------------------------------------------------------------------------------
    def launch(
        self,
        argv: Sequence[str],
        report: Report,
        *,
        env: Mapping[str, str] | ExecEnvironment | None = None,
        stdin_data: bytes | None = None,
        keep_stdin_open: bool = False,
    ) -> ProcessHandle:
        """Start ``argv`` (no shell, ``PATH`` searched) in a new session; ``report`` at its end.

        ``env`` is the child's whole environment (None: this process's); a backend starting
        many children passes an :class:`~lofarexec.transport.execenv.ExecEnvironment` built once per
        run, plus each job's own variables, rather than a mapping that must be encoded every time.
        ``stdin_data`` (at most 64 KiB: secrets, not payloads) is written to its stdin, which is
        then closed, or held open until the process exits when ``keep_stdin_open`` (so a remote
        side watching stdin sees EOF if the control node dies). A launch that fails at once
        (program missing, not executable) is reported as a transport error at once, and its
        handle's ``kill()`` does nothing.
        """
        if stdin_data is not None and len(stdin_data) > _MAX_STDIN:
            raise ValueError(f"stdin_data is limited to {_MAX_STDIN} bytes")
        pipes: list[int] = []
        try:
            out_read, out_write = _pipe(pipes)
            err_read, err_write = _pipe(pipes)
            stdin_write = None
            stdin = self._devnull
            if stdin_data is not None or keep_stdin_open:
                stdin, stdin_write = _pipe(pipes, reader_blocks=True)
            if env is not None and not isinstance(env, ExecEnvironment):
                env = ExecEnvironment(env)
            # Created as Popen creates it (see lofarexec.transport.execenv): the interpreter lock is
            # let go while the child is being created, and it gets the PATH the child has, not ours.
            # Not os.posix_spawn, which holds the lock until the child has exec'd: under load that
            # froze every thread of the control node for milliseconds per launch.
            pid, popen = spawn(argv, env=env, stdin=stdin, stdout=out_write, stderr=err_write)
        except OSError as exc:
            for fd in pipes:
                os.close(fd)
            reason = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            report(Outcome(None, transport_error=reason))
            return ProcessHandle(self, None)
        except BaseException:  # a bad argument (a NUL byte): the caller's error, not a leak
            for fd in pipes:
                os.close(fd)
            raise
        for fd in pipes:
            if fd not in (out_read, err_read, stdin_write):
                os.close(fd)
        if stdin_write is not None:
            _feed(stdin_write, stdin_data or b"")
            if not keep_stdin_open:
                os.close(stdin_write)
                stdin_write = None
        child = _Child(pid, popen, report, out_read, err_read, stdin_write)
        self._watch(child)
        return ProcessHandle(self, child)

    def kill(self, child: _Child) -> None:
        """TERM the child's process group now, KILL it after the grace period."""
        with child.lock:
            if child.exited or child.killed:
                return
            child.killed = True
            signal_group(child.pid, signal.SIGTERM)
        self._call_soon(lambda: self._timers.add(self.kill_grace,
                                                  lambda: self._force_kill(child)))

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the launcher's thread ``delay`` seconds from now (a backend's own
        TERM-then-KILL): its one timer heap, no thread per timer. Dropped once it is closed."""
        self._call_soon(lambda: self._timers.add(delay, action))

    # -- any thread --------------------------------------------------------------------------------
    def _watch(self, child: _Child) -> None:
        self._children.add(child)
        for fd, kind in ((child.out, _OUTPUT), (child.err, _OUTPUT), (child.pidfd, _EXIT)):
            self._watched[fd] = (kind, child)
            self._epoll.register(fd, select.EPOLLIN)
        if self._closing:
            self.kill(child)

    def _call_soon(self, action: Callable[[], None]) -> None:
        self._pending.append(action)
        self._waker.wake()

    # -- watcher thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not (self._closing and not self._children):
            timeout = self._timers.next_timeout()
            for fd, _ in self._epoll.poll(-1.0 if timeout is None else timeout):
                watched = self._watched.get(fd)
                if watched is None:
                    continue  # closed by an earlier event of this same batch
                kind, child = watched
                if kind == _OUTPUT:
                    self._on_output(child, fd)  # type: ignore[arg-type]
                elif kind == _EXIT:
                    self._on_exit(child)  # type: ignore[arg-type]
                else:
                    self._on_wake()
            for action in self._timers.pop_due():
                action()

    def _on_wake(self) -> None:
        self._waker.drain()
        while self._pending:
            self._pending.popleft()()

    def _on_output(self, child: _Child, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if data:
            keep_tail(child.tails[fd], data, self.output_limit)
            return
        self._forget(fd)
        child.open_streams.discard(fd)
        if child.exited and not child.open_streams:
            self._finish(child)

    def _on_exit(self, child: _Child) -> None:
        self._forget(child.pidfd)
        with child.lock:
            # The leader is a zombie now, so its pid (our process group id) cannot be reused
            # yet: kill what it left behind in its group before reaping it.
            signal_group(child.pid, signal.SIGKILL)
            _, status = os.waitpid(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.popen is not None:
                child.popen.returncode = child.returncode
            child.exited = True
        if child.stdin is not None:
            os.close(child.stdin)
            child.stdin = None
        if not child.open_streams:
            self._finish(child)
        else:
            self._timers.add(DRAIN_GRACE, lambda: self._finish(child))

    def _forget(self, fd: int) -> None:
        """Stop watching ``fd`` and close it.

        Unregister explicitly: closing alone does not remove it from the epoll set while a
        child being spawned at that moment still holds a copy, and a stale registration would
        then report events under a number that a new job may already be using.
        """
        del self._watched[fd]
        self._epoll.unregister(fd)
        os.close(fd)

    def _force_kill(self, child: _Child) -> None:
        with child.lock:
            if not child.exited:
                signal_group(child.pid, signal.SIGKILL)

    def _finish(self, child: _Child) -> None:
        if child.finished:
            return
        child.finished = True
        for fd in child.open_streams:  # a straggler kept the pipe open past the drain grace
            self._forget(fd)
        child.open_streams.clear()
        self._children.discard(child)
        outcome = Outcome(child.returncode, output=_text(child.tails[child.out]),
                          errors=_text(child.tails[child.err]))
        try:
            child.report(outcome)
        except Exception:  # a broken callback must not stop the loop that watches every job
            _log.exception("report callback for pid %d failed", child.pid)

    def _begin_close(self) -> None:
        self._closing = True
        for child in list(self._children):
            self.kill(child)


def keep_tail(tail: bytearray, data: bytes, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
    """Append ``data`` to a job's output ``tail``, keeping only its last ``limit`` bytes."""
    tail += data
    if len(tail) > limit:
        del tail[: len(tail) - limit]


def _pipe(opened: list[int], reader_blocks: bool = False) -> tuple[int, int]:
    """A close-on-exec pipe (the child's copy, made by dup2, is not).

    Our end of an output pipe is made non-blocking. Never the child's end: the flag belongs to
    the shared open file, and a program handed a non-blocking stdin fails its reads (EAGAIN).
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    opened += (read_end, write_end)
    if not reader_blocks:
        os.set_blocking(read_end, False)
    return read_end, write_end


def _feed(fd: int, data: bytes) -> None:
    """Write a small payload (under the pipe's capacity, so it never blocks)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass  # it exited before reading: its exit status tells the story


def signal_group(pgid: int, signum: int) -> None:
    """Signal a process group; nothing if it is gone (or, for a killed job, not ours)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")

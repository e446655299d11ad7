"""Local processes for subprocess-based transports, all watched by one thread.

Every transport that works by starting a program on the control node (``local`` runs the node
itself, ``ssh`` runs the OpenSSH client, ``mpirun``, ``srun``, ``cmdline`` their launchers) needs
the same things: start it in a process group of its own, feed it a secret on stdin, drain its
stdout and stderr without deadlock however much it writes, see its exit the moment it happens,
kill its whole group on demand (TERM, then KILL after a grace period), and leave nothing behind.
:class:`ProcessLauncher` does this for thousands of processes with a single thread::

    launch() --Popen--> child (own session)      pidfd ----+
        |                 stdout/stderr pipes -------------+--> selector loop (one thread)
        +--> pending registrations --wakeup pipe-----------+        |
                                                                    v
    kill() --killpg TERM--> timer --killpg KILL          report(Outcome) exactly once

Waiting is on the kernel's pidfd and pipe readiness, never a polling sleep, so an exit is seen
at once. When the main process exits, anything it left in its process group is killed: a job's
processes do not outlive the job.
"""

from __future__ import annotations

import heapq
import logging
import itertools
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from lofarexec.backend import Outcome, Report

#: How much of each of stdout and stderr is kept per job (the tail), in bytes.
DEFAULT_OUTPUT_LIMIT = 64 * 1024
#: Seconds between TERM and KILL when a job is killed.
DEFAULT_KILL_GRACE = 1.0
#: Seconds to wait for the pipes to close after the main process has exited.
DRAIN_GRACE = 2.0
_READ_CHUNK = 65536
_log = logging.getLogger("lofarexec.process")
_MAX_STDIN = 65536


class _Child:
    """One launched process and what the loop knows about it."""

    def __init__(self, popen: subprocess.Popen[bytes], report: Report, output_limit: int):
        self.popen = popen
        self.report = report
        self.output_limit = output_limit
        self.pidfd = os.pidfd_open(popen.pid)
        self.streams: dict[int, bytearray] = {}
        self.lock = threading.Lock()
        self.exited = False
        self.killed = False
        self.finished = False
        self.returncode: int | None = None

    def append(self, fd: int, data: bytes) -> None:
        tail = self.streams[fd]
        tail += data
        if len(tail) > self.output_limit:
            del tail[: len(tail) - self.output_limit]


class ProcessHandle:
    """The handle a transport returns for a launched process; ``kill()`` ends its group."""

    def __init__(self, launcher: ProcessLauncher, child: _Child | None) -> None:
        self._launcher = launcher
        self._child = child

    @property
    def pid(self) -> int | None:
        """The process id, or ``None`` when the launch failed."""
        return self._child.popen.pid if self._child is not None else None

    def kill(self) -> None:
        if self._child is not None:
            self._launcher.kill(self._child)


class ProcessLauncher:
    """Starts processes and reports each one's end through its ``report`` callback.

    Create one per backend instance, ``start()`` it in ``Backend.open`` and ``close()`` it in
    ``Backend.close``. ``launch`` may be called from any thread.
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
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._pending: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._children: set[_Child] = set()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._clock = time.monotonic

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
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- API -----------------------------------------------------------------------------------
    def launch(
        self,
        argv: Sequence[str],
        report: Report,
        *,
        env: Mapping[str, str] | None = None,
        stdin_data: bytes | None = None,
        keep_stdin_open: bool = False,
        cwd: str | None = None,
    ) -> ProcessHandle:
        """Start ``argv`` (no shell) in a new session; ``report`` is called once when it ends.

        ``stdin_data`` (at most 64 KiB: secrets, not payloads) is written to its stdin, which is
        then closed, or held open until the process exits when ``keep_stdin_open`` (so a remote
        side watching stdin sees EOF if the control node dies). A launch that fails at once
        (program missing, not executable) is reported as a transport error at once, and its
        handle's ``kill()`` does nothing.
        """
        if stdin_data is not None and len(stdin_data) > _MAX_STDIN:
            raise ValueError(f"stdin_data is limited to {_MAX_STDIN} bytes")
        wants_stdin = stdin_data is not None or keep_stdin_open
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if wants_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            report(Outcome(None, transport_error=f"cannot start {argv[0]!r}: {exc.strerror or exc}"))
            return ProcessHandle(self, None)
        if popen.stdin is not None:
            try:
                if stdin_data:
                    popen.stdin.write(stdin_data)
                    popen.stdin.flush()
                if not keep_stdin_open:
                    popen.stdin.close()
            except BrokenPipeError:
                pass  # it exited before reading: its exit status tells the story
        child = _Child(popen, report, self.output_limit)
        self._call_soon(lambda: self._register(child))
        return ProcessHandle(self, child)

    def kill(self, child: _Child) -> None:
        """TERM the child's process group now, KILL it after the grace period."""
        with child.lock:
            if child.exited or child.killed:
                return
            child.killed = True
            _signal_group(child.popen.pid, signal.SIGTERM)
        self._call_soon(lambda: self._add_timer(self.kill_grace, lambda: self._force_kill(child)))

    # -- loop thread -----------------------------------------------------------------------------
    def _call_soon(self, action: Callable[[], None]) -> None:
        self._pending.append(action)
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the loop will run the action

    def _loop(self) -> None:
        while not (self._closing and not self._children):
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - self._clock())
            for key, _ in self._selector.select(timeout):
                self._dispatch(key)
            self._run_due_timers()
        for child in list(self._children):  # pragma: no cover - only after a loop error
            self._finish(child)

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        if key.data is None:
            try:
                os.read(self._wake_read, 4096)
            except BlockingIOError:
                pass
            while self._pending:
                self._pending.popleft()()
            return
        child, kind = key.data
        if kind == "exit":
            self._on_exit(child)
        else:
            self._on_output(child, key.fd)

    def _register(self, child: _Child) -> None:
        self._children.add(child)
        self._selector.register(child.pidfd, selectors.EVENT_READ, (child, "exit"))
        for stream in (child.popen.stdout, child.popen.stderr):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            child.streams[fd] = bytearray()
            self._selector.register(fd, selectors.EVENT_READ, (child, "output"))
        if self._closing:
            self.kill(child)

    def _on_output(self, child: _Child, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if data:
            child.append(fd, data)
            return
        self._selector.unregister(fd)
        if child.exited and self._streams_done(child):
            self._finish(child)

    def _on_exit(self, child: _Child) -> None:
        self._selector.unregister(child.pidfd)
        with child.lock:
            # The leader is a zombie now, so its pid (our process group id) cannot be reused
            # yet: kill what it left behind in its group before reaping it.
            _signal_group(child.popen.pid, signal.SIGKILL)
            child.returncode = child.popen.wait()
            child.exited = True
        if self._streams_done(child):
            self._finish(child)
        else:
            self._add_timer(DRAIN_GRACE, lambda: self._finish(child))

    def _streams_done(self, child: _Child) -> bool:
        registered = self._selector.get_map()
        return not any(fd in registered for fd in child.streams)

    def _force_kill(self, child: _Child) -> None:
        with child.lock:
            if not child.exited:
                _signal_group(child.popen.pid, signal.SIGKILL)

    def _finish(self, child: _Child) -> None:
        if child.finished:
            return
        child.finished = True
        registered = self._selector.get_map()
        for fd in child.streams:
            if fd in registered:
                self._selector.unregister(fd)
        for stream in (child.popen.stdin, child.popen.stdout, child.popen.stderr):
            if stream is not None:
                stream.close()
        os.close(child.pidfd)
        self._children.discard(child)
        out_fd, err_fd = child.streams
        outcome = Outcome(
            child.returncode,
            output=_text(child.streams[out_fd]),
            errors=_text(child.streams[err_fd]),
        )
        try:
            child.report(outcome)
        except Exception:  # a broken callback must not stop the loop that watches every job
            _log.exception("report callback for pid %d failed", child.popen.pid)

    def _add_timer(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self._clock() + delay, next(self._timer_ids), action))

    def _run_due_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()

    def _begin_close(self) -> None:
        self._closing = True
        for child in list(self._children):
            self.kill(child)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


"""``lofarpipe.support.subprocessgroup``: run a group of local commands, a few at a time.

Node scripts of the later framework start their executables through :class:`SubProcessGroup`:
``run()`` each command (started at once, or queued while ``max_concurrent_processes`` run),
then ``wait_for_finish()``. Every line a command writes is logged as it comes - stdout at
DEBUG, stderr at WARNING - or printed when no logger was given; the wait returns ``None`` when
every command exited 0, else a list of ``(command, exit status)`` for those that did not.

Standard library only (a node script runs it on its host). Output is read from all commands
through one selector, so nothing blocks on a full pipe and any number of descriptors works;
the wait wakes when output arrives or a command ends (its pipes close), and at the latest every
``polling_interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SubProcess", "SubProcessGroup"]


class SubProcess:
    """One running command whose output lines go to a logger (or stdout) as they arrive."""

    def __init__(self, logger: logging.Logger | None, cmd: Sequence[str],
                 cwd: str | None) -> None:
        self.cmd = list(cmd)
        self.killed = False
        self.completed = False
        self.exit_status: int | None = None
        self._info: Callable[[str], Any] = logger.info if logger else print
        self._sinks: dict[int, Callable[[str], Any]] = {}
        self._info(f"Subprocess starting: {' '.join(self.cmd)} ({self.cmd})")
        self.process = subprocess.Popen(
            self.cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
        self.pid = self.process.pid
        assert self.process.stdout is not None and self.process.stderr is not None
        self.streams = {self.process.stdout.fileno(): self.process.stdout,
                        self.process.stderr.fileno(): self.process.stderr}
        self._sinks = {self.process.stdout.fileno(): logger.debug if logger else print,
                       self.process.stderr.fileno(): logger.warning if logger else print}
        self._partial = {fd: b"" for fd in self.streams}

    def read(self, fd: int) -> bool:
        """Read what ``fd`` holds and log its complete lines; False at its end (then
        :meth:`close_stream` it)."""
        data = os.read(fd, 65536)
        lines = (self._partial[fd] + data).split(b"\n")
        self._partial[fd] = lines.pop() if data else b""
        if not data and lines and lines[-1] == b"":
            lines.pop()  # the output ended with a line break: no empty last line
        for line in lines:
            self._sinks[fd](line.decode("utf-8", "replace").rstrip("\r"))
        return bool(data)

    def close_stream(self, fd: int) -> None:
        """Close an output stream that has ended."""
        self.streams.pop(fd).close()

    def done(self) -> bool:
        """True once the command has exited and all its output was read."""
        if self.completed:
            return True
        if self.streams or self.process.poll() is None:
            return False
        self.exit_status = self.process.returncode
        self.completed = True
        self._info(f"Subprocess completed with exit status {self.exit_status}: "
                   f"{' '.join(self.cmd)}")
        return True

    def kill(self) -> None:
        """TERM the command and what it started (its own session); once."""
        if self.killed or self.process.poll() is not None:
            return
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class SubProcessGroup:
    """Start commands now or when a slot is free; wait for all of them.

    ``usageStats`` (anything with ``addPID(pid)``) is told every started process; a set
    ``killSwitch`` (a :class:`threading.Event`) stops starting new ones and TERMs running ones.
    """

    def __init__(self, logger: logging.Logger | None = None, usageStats: Any = None,
                 max_concurrent_processes: int = 8, polling_interval: float = 10,
                 killSwitch: threading.Event | None = None) -> None:
        self.logger = logger
        self.usageStats = usageStats
        self.max_concurrent_processes = max_concurrent_processes
        self.polling_interval = polling_interval
        self.killSwitch = killSwitch
        self.process_group: list[SubProcess] = []
        self.processes_waiting_for_execution: deque[tuple[list[str], str | None]] = deque()

    @property
    def running_process_count(self) -> int:
        """How many started commands have not been seen to end."""
        return sum(not process.completed for process in self.process_group)

    def run(self, cmd_in: str | Sequence[str], unsave: bool = False,
            cwd: str | None = None) -> None:
        """Start ``cmd_in`` (a list, or a string split at white space) or queue it."""
        if isinstance(cmd_in, str):
            cmd = cmd_in.split()
        elif isinstance(cmd_in, (list, tuple)) and all(isinstance(a, str) for a in cmd_in):
            cmd = list(cmd_in)
        else:
            raise TypeError(f"SubProcessGroup.run() takes a string or a list of strings, "
                            f"not {cmd_in!r}")
        if self.running_process_count >= self.max_concurrent_processes:
            self.processes_waiting_for_execution.append((cmd, cwd))
        else:
            self._start(cmd, cwd)

    def _stopping(self) -> bool:
        return bool(self.killSwitch and self.killSwitch.is_set())

    def _start(self, cmd: list[str], cwd: str | None) -> None:
        if self._stopping():
            return
        process = SubProcess(self.logger, cmd, cwd)
        self.process_group.append(process)
        if self.usageStats:
            self.usageStats.addPID(process.pid)

    def wait_for_finish(self) -> list[tuple[list[str], int]] | None:
        """Wait for every command run (queued ones included); None if all exited 0."""
        failed: list[tuple[list[str], int]] = []
        with selectors.DefaultSelector() as selector:
            while True:
                running = [p for p in self.process_group if not p.completed]
                if self._stopping():
                    self.processes_waiting_for_execution.clear()
                    for process in running:
                        process.kill()
                for process in running:
                    for fd in process.streams:
                        if fd not in selector.get_map():
                            selector.register(fd, selectors.EVENT_READ, process)
                for process in running:
                    if process.done():
                        if process.exit_status != 0:
                            failed.append((process.cmd, int(process.exit_status or 0)))
                while (self.processes_waiting_for_execution and not self._stopping()
                       and self.running_process_count < self.max_concurrent_processes):
                    self._start(*self.processes_waiting_for_execution.popleft())
                if not self.running_process_count:
                    break
                if not any(p.streams for p in self.process_group if not p.completed):
                    # output all read, exit not yet seen: wait for the exit itself
                    self._wait_exit(self.polling_interval)
                    continue
                for key, _ in selector.select(self.polling_interval):
                    if not key.data.read(key.fd):
                        selector.unregister(key.fd)
                        key.data.close_stream(key.fd)
        return failed or None

    def _wait_exit(self, timeout: float) -> None:
        for process in self.process_group:
            if not process.completed and not process.streams:
                try:
                    process.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
                return

"""One run of a job name at a time: a lock in the job directory.

Two recipes started with the same job name would interleave their journals and overwrite each
other's outputs; the second is refused at once, naming who holds the lock. The lock is an
``flock`` on ``<job directory>/run.lock``, so the kernel drops it when its holder dies however
it dies (a SIGKILL, a lost node): a stale lock file never blocks the next run. Taking it again in
the process that holds it (a recipe's batches) is allowed.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from lofarexec.errors import LofarexecError

__all__ = ["LOCK_NAME", "RunLock", "RunLocked"]

LOCK_NAME = "run.lock"
_held: dict[Path, list[int]] = {}  # lock path -> [holders in this process, its descriptor]
_held_lock = threading.Lock()


class RunLocked(LofarexecError):
    """Another run of the same job name holds the job directory."""


class RunLock:
    """Hold the job directory of ``job_directory`` for this run (a context manager)."""

    def __init__(self, job_directory: str | os.PathLike[str]) -> None:
        self.path = Path(job_directory).resolve() / LOCK_NAME

    def __enter__(self) -> RunLock:
        path = self.path
        with _held_lock:
            if path in _held:
                _held[path][0] += 1
                return self
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise RunLocked(f"{path}: another run of this job is in progress ({holder}); "
                                "wait for it to end, or use another job name (-j)") from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
            _held[path] = [1, fd]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with _held_lock:
            entry = _held[self.path]
            entry[0] -= 1
            if entry[0]:
                return
            del _held[self.path]
        os.close(entry[1])  # the flock goes with it; the file stays, naming the last holder

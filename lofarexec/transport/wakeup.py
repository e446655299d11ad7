"""A pipe that wakes a thread blocked in ``select()`` when another thread has work for it.

On Linux it is an eventfd: one descriptor instead of a pipe's two, and every host's connection
holds one, so with hundreds of hosts that is hundreds of descriptors fewer (issue 17).
"""

from __future__ import annotations

import os
import sys
import threading

#: What a wake-up writes: eventfd takes an 8-byte non-zero count (a pipe takes anything).
_ONE = (1).to_bytes(8, sys.byteorder)


class WakePipe:
    """Register :meth:`fileno` for reading in the sleeper's selector; any thread calls
    :meth:`wake`, the sleeper :meth:`drain`\\ s it. Wake-ups after :meth:`close` are ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        with self._lock:
            if self._write >= 0:
                try:
                    os.write(self._write, _ONE)
                except BlockingIOError:
                    pass  # full of wake-ups already

    def drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the pipe (once the sleeper is gone); safe twice."""
        with self._lock:
            if self._write >= 0:
                os.close(self._read)
                if self._write != self._read:
                    os.close(self._write)
                self._read = self._write = -1

"""The lifeline: local jobs die with their control node, however it dies.

Each job runs in a session of its own, so when the control node is killed outright (SIGKILL,
the OOM killer) nothing of ours runs and its jobs would live on under pid 1. ``PR_SET_PDEATHSIG``
cannot help: it needs code run in each child before exec (the fast spawn path has none), it
fires when the *thread* that started the child ends (jobs are started from worker threads),
and it reaches only the child, not what the child started.

So one small watcher per run, started at ``open``: ``/bin/sh`` blocked reading a pipe whose
only writer is the control node. At a normal close the control node writes ``closed`` and the
shell exits. When the pipe closes without that word, the control node is gone: the shell execs
:mod:`.reaper` (a stdlib-only script), which kills every process that carries this run's
marker in its environment, and its whole process group: TERM, then KILL after ``kill_grace``.
Every job gets the marker (:data:`MARKER`) in the environment the run encodes once, so a job
costs the watcher nothing: no message per start or end, no work at all until the death.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

from lofarexec.transport import spawn

#: The environment variable that marks every local job of a run (and what they start).
MARKER = "LOFAREXEC_CONTROL_NODE"
_REAPER = Path(__file__).with_name("reaper.py")
_WATCH = 'read -r word; [ "$word" = closed ] || exec "$0" -I -S "$1" "$2" "$3" "$4"'
_log = logging.getLogger("lofarexec.local")


class Lifeline:
    """One watcher process that kills this run's local jobs if the control node dies."""

    def __init__(self, kill_grace: float) -> None:
        self.marker = f"{MARKER}={os.getpid()}-{secrets.token_hex(8)}"
        """The ``NAME=value`` entry every job's environment carries."""
        read_end, self._write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with open(os.devnull, "rb") as devnull:
                self._pid, self._popen = spawn(
                    ["/bin/sh", "-c", _WATCH, sys.executable, str(_REAPER), self.marker,
                     f"{kill_grace:g}", str(os.getpid())],
                    env=None, stdin=read_end, stdout=devnull.fileno(), stderr=2)
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def variable(self) -> dict[str, str]:
        """The marker as a variable for a job's environment."""
        name, value = self.marker.split("=", 1)
        return {name: value}

    def close(self) -> None:
        """Tell the watcher the run ended well, and reap it; safe twice."""
        if self._write_end < 0:
            return
        try:
            os.write(self._write_end, b"closed\n")
        except BrokenPipeError:
            _log.warning("the local jobs' watcher (pid %d) had ended early", self._pid)
        os.close(self._write_end)
        self._write_end = -1
        _, status = os.waitpid(self._pid, 0)
        if self._popen is not None:
            self._popen.returncode = os.waitstatus_to_exitcode(status)

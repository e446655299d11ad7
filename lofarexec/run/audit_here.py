"""The end-of-run audit's listing for nodes that ran on this machine, read here: no job.

When every node of a run ran on the control node (a ``local_only`` backend), the processes the
audit looks for are in this machine's ``/proc``, which the control process can read itself.
:func:`leftovers_here` prints the lines :func:`lofarexec.run.audit.leftover_command` would print
if it were started as a job (the same marker match on ``/proc/PID/environ``, zombies skipped,
the job's host and a 200-character command), without the shell, ``grep``, ``sed`` and ``cut``
processes that job costs at the end of every local run (issue 17). What it finds is then killed
here too (:func:`run_here`), in the process table it was found in, whatever the backend's jobs
run in.
"""

from __future__ import annotations

import os
import subprocess

from lofarexec.backend import Outcome
from lofarexec.channel.protocol import ENV_HOST, ENV_RUN

__all__ = ["leftovers_here", "run_here"]

_PREFIX = "lofarexec-leftover"  # the audit's line prefix (lofarexec.run.audit)
_GONE = frozenset("ZXx")  # zombie or dead: nothing left to kill


def leftovers_here(marker: str) -> str:
    """``lofarexec-leftover PID PGID HOST COMMAND`` for each live process of this machine whose
    environment holds ``ENV_RUN=marker`` (HOST: its ``LOFAREXEC_HOST``, ``-`` if none)."""
    needle = f"{ENV_RUN}={marker}".encode()
    host_prefix = f"{ENV_HOST}=".encode()
    lines = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        environ = _read(f"/proc/{name}/environ")
        if environ is None or needle not in environ:
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(b") ") + 2:].split()  # after "pid (comm) ": state ppid pgrp
        if len(fields) < 3 or fields[0].decode() in _GONE:
            continue
        host = next((entry[len(host_prefix):] for entry in environ.split(b"\0")
                     if entry.startswith(host_prefix)), b"") or b"-"
        command = (_read(f"/proc/{name}/cmdline") or b"").replace(b"\0", b" ")[:200]
        words = [_PREFIX.encode(), name.encode(), fields[2], host, command.strip()]
        lines.append(b" ".join(words).decode("utf-8", "replace").replace("\n", " "))
    return "".join(f"{line}\n" for line in lines)


def run_here(commands: dict[str, str], timeout: float) -> dict[str, Outcome | str]:
    """Run each shell command (by host name: all of them this machine) here, one after the
    other; by host, the outcome, or why there is none, as the audit's own runner reports."""
    results: dict[str, Outcome | str] = {}
    for host, command in commands.items():
        try:
            done = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout,
                                  env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}, check=False)
        except subprocess.TimeoutExpired:
            results[host] = f"no answer in {timeout:g} s"
        except OSError as exc:
            results[host] = f"cannot start: {exc}"
        else:
            results[host] = (Outcome(0, output=done.stdout, errors=done.stderr)
                             if done.returncode == 0 else
                             f"status {done.returncode}: {done.stderr.strip()[-200:]}")
    return results


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:  # gone meanwhile, or not ours to read
        return None

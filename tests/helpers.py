"""Helpers the tests share (fixtures are in conftest.py): report collectors, pipeline.cfg
files, the control node killed outright, and the one "wait until these processes are gone"."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lofarexec.backend import Outcome
from lofarexec.testing.procs import running as process_alive
from lofarexec.testing.procs import wait_gone

REPO = Path(__file__).resolve().parent.parent

__all__ = ["ESCAPING_NODE", "REPO", "Reports", "escaped", "kill_control_node_outright",
           "process_alive", "require_sshd", "wait_gone", "write_config"]

#: A node that double-forks a sleeper into a session of its own (out of its job's process-group
#: kill; its stdio on /dev/null), which writes "PID NETNS" to argv[1] and execs; the node ends
#: once it has (the pipe's end closes). The end-of-run audit's quarry.
ESCAPING_NODE = """\
import os, sys
path = sys.argv[1]
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        with open(path + ".new", "w") as out:
            out.write(f"{os.getpid()} {os.readlink('/proc/self/ns/net')}")
        os.rename(path + ".new", path)
        os.execvp("sleep", ["sleep", "300"])  # closes write_end (not inheritable)
    os._exit(0)
os.close(write_end)
os.wait()
os.read(read_end, 1)  # end of file once the sleeper exec'd
"""


def escaped(path: Path) -> tuple[int, str]:
    """The pid and network namespace an :data:`ESCAPING_NODE` sleeper wrote to ``path``."""
    pid, namespace = path.read_text().split()
    return int(pid), namespace


class Reports:
    """A backend's reports by job: ``reports(key)`` is the callback for job ``key``; a test
    waits for the ones it needs, and :meth:`each_once` says whether none came twice (asked in
    the test's thread: an assertion in a backend's thread would only be logged)."""

    def __init__(self) -> None:
        self.all: dict[int, list[Outcome]] = {}
        self._changed = threading.Condition()

    def __call__(self, key: int) -> Callable[[Outcome], None]:
        def deliver(outcome: Outcome) -> None:
            with self._changed:
                self.all.setdefault(key, []).append(outcome)
                self._changed.notify_all()
        return deliver

    def wait(self, key: int, timeout: float = 30.0) -> Outcome:
        with self._changed:
            assert self._changed.wait_for(lambda: key in self.all, timeout), f"no report {key}"
            return self.all[key][0]

    def each_once(self) -> bool:
        with self._changed:
            return all(len(outcomes) == 1 for outcomes in self.all.values())


def write_config(directory: Path, text: str = "", *, method: str = "local") -> Path:
    """A pipeline.cfg in ``directory`` with a job directory under it, plus ``text``.

    A section that ``text`` defines replaces the base one of that name.
    """
    base = {
        "DEFAULT": f"runtime_directory = {directory}/runtime",
        "layout": "job_directory = %(runtime_directory)s/jobs/%(job_name)s",
        "deploy": f"engine_ppath = {REPO}",
        "remote": f"method = {method}",
    }
    extra = textwrap.dedent(text)
    kept = [f"[{name}]\n{body}\n" for name, body in base.items() if f"[{name}]" not in extra]
    path = directory / "pipeline.cfg"
    path.write_text("".join(kept) + extra)
    return path


STUBBORN_NODE = """\
import os, signal, subprocess, sys, time
from lofarexec.node import LOFARnode

class stubborn(LOFARnode):
    def run(self, *args):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        self.logger.warning("started %d %d", os.getpid(), child.pid)
        time.sleep(300)
        return 0

if __name__ == "__main__":
    sys.exit(stubborn(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""

DYING_MASTER = """\
import sys
from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

class dies(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        self._schedule_jobs([ComputeJob(h, "{python} {node}") for h in {hosts!r}])
        return 0

if __name__ == "__main__":
    sys.exit(dies().main())
"""


def kill_control_node_outright(directory: Path, hosts: list[str], python: str) -> list[int]:
    """Run a recipe (pipeline.cfg already in ``directory``) whose nodes on two ``hosts`` ignore
    SIGTERM and start a child each; SIGKILL the recipe once all four have started, so that no
    handler of ours runs. Returns the node and child pids, for the test to see them gone."""
    import re
    import signal
    import subprocess

    node = directory / "stubborn.py"
    node.write_text(STUBBORN_NODE)
    master = directory / "dies.py"
    master.write_text(DYING_MASTER.replace("{python}", python).replace("{node}", str(node))
                      .replace("{hosts!r}", repr(tuple(hosts))))
    process = subprocess.Popen([sys.executable, str(master), "-j", "dies", "-v"],
                               stderr=subprocess.PIPE, text=True, cwd=directory)
    pids: list[int] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            found = re.search(r"started (\d+) (\d+)", line)
            if found:
                pids += [int(found[1]), int(found[2])]
                if len(pids) == 4:
                    break
        assert len(pids) == 4
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    return pids


def require_sshd() -> None:
    """Skip (or, under CI, fail) when the ssh test bed cannot run here."""
    from lofarexec.testing.sshbed import SSHD

    problem = None
    if os.geteuid() != 0:
        problem = "the sshd test hosts need root"
    elif not SSHD.exists():
        problem = "no /usr/sbin/sshd: run `bash scripts/test`, which installs openssh-server"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)

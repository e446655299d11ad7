"""The local audit reads /proc in the control process (issue 17): it lists what the audit's
shell command lists, for the same processes, and its kill runs here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from lofarexec.channel.protocol import ENV_HOST, ENV_RUN
from lofarexec.run.audit import leftover_command, parse_leftovers
from lofarexec.run.audit_here import leftovers_here, run_here
from lofarexec.testing.procs import wait_gone
from lofarexec.transport.orphans import orphan_kill_command

MARKER = "00112233445566aa"


def test_this_machine_s_listing_equals_the_shell_command_s():
    base = {**os.environ, ENV_RUN: MARKER}
    base.pop(ENV_HOST, None)
    zombie_maker = (  # a marked zombie: not listed by either (one line: see the next test)
        "import os, time; pid = os.fork(); pid or os._exit(0); print(pid, flush=True); "
        "time.sleep(60)")
    started = [
        subprocess.Popen(["sleep", "60"], env={**base, ENV_HOST: "node7"}),
        subprocess.Popen(["sleep", "61"], env={**base, ENV_HOST: ""}),  # empty: "-"
        subprocess.Popen(["sleep", "62"], env=base, start_new_session=True),
        subprocess.Popen(["sleep", "63"], env={**base, ENV_RUN: "ffeeddccbbaa9988"}),
        subprocess.Popen([sys.executable, "-c", zombie_maker], env=base,
                         stdout=subprocess.PIPE, text=True),
    ]
    try:
        zombie = int(started[-1].stdout.readline())
        shell = subprocess.run(["/bin/sh", "-c", leftover_command(MARKER)], check=True,
                               capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        here = leftovers_here(MARKER)
    finally:
        for process in started:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
    found = sorted(parse_leftovers("here", here), key=lambda left: left.pid)
    assert found == sorted(parse_leftovers("here", shell.stdout), key=lambda left: left.pid)
    by_pid = {left.pid: (left.host, left.group, left.command) for left in found}
    assert zombie not in by_pid
    assert by_pid[started[0].pid] == ("node7", os.getpgrp(), "sleep 60")
    assert by_pid[started[1].pid] == ("here", os.getpgrp(), "sleep 61")
    assert by_pid[started[2].pid] == ("here", started[2].pid, "sleep 62")
    assert by_pid[started[4].pid][2].startswith(sys.executable)
    assert started[3].pid not in by_pid and len(by_pid) == 4


def test_the_kill_runs_here_and_reports_each_host():
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        results = run_here({"a": orphan_kill_command([sleeper.pid], 0.1), "b": "exit 3"}, 30)
        assert sleeper.wait(10) == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert not isinstance(results["a"], str) and results["a"].returncode == 0
    assert results["b"] == "status 3: "
    assert wait_gone(sleeper.pid, 10)


def test_a_command_line_with_newlines_is_one_line_that_names_no_other_process():
    forged = "x\nlofarexec-leftover 1 1 - forged"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", forged],
                               env={**os.environ, ENV_RUN: MARKER})
    try:
        found = parse_leftovers("here", leftovers_here(MARKER))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [(left.pid, left.command) for left in found] == [
        (sleeper.pid, f"{sys.executable} -c import time; time.sleep(60) x "
                      "lofarexec-leftover 1 1 - forged")]

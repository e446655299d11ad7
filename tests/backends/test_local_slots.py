"""SlotWatchers (the local backend's launcher): a worker per running job, started, drained,
killed and reported as the shared ProcessLauncher would, with the launcher beyond the cap."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from lofarexec_local.slots import SlotWatchers

from lofarexec.backend import Outcome
from lofarexec.transport.execenv import ExecEnvironment
from lofarexec.transport.process import ProcessLauncher
from tests.helpers import Reports, wait_gone

ENV = ExecEnvironment(dict(os.environ))
#: Ignores SIGTERM, tells its pid and its child's on the port it is given, then waits.
STUBBORN = ("import os, signal, socket, subprocess, sys, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); child = subprocess.Popen(['sleep', '300']); "
            "socket.create_connection(('127.0.0.1', int(sys.argv[1]))).sendall(b'%d %d' % "
            "(os.getpid(), child.pid)); time.sleep(300)")


@pytest.fixture
def slots() -> Iterator[Callable[..., SlotWatchers]]:
    before = set(threading.enumerate())
    made: list[tuple[SlotWatchers, ProcessLauncher]] = []

    def make(**options: object) -> SlotWatchers:
        launcher = ProcessLauncher(kill_grace=0.3, name="fallback")
        launcher.start()
        options.setdefault("kill_grace", 0.3)
        watchers = SlotWatchers(launcher, **options)  # type: ignore[arg-type]
        made.append((watchers, launcher))
        return watchers

    yield make
    for watchers, launcher in made:
        watchers.close()
        watchers.close()  # safe twice
        launcher.close()
    assert [t for t in threading.enumerate() if t not in before] == []


def test_outputs_statuses_and_one_report_each(slots) -> None:
    watchers, reports = slots(), Reports()
    for key in range(30):
        watchers.launch(("/bin/sh", "-c", f"echo out{key}; echo err{key} >&2; exit {key % 4}"),
                        reports(key), ENV)
    for key in range(30):
        assert reports.wait(key) == Outcome(key % 4, output=f"out{key}\n", errors=f"err{key}\n")
    assert reports.each_once()


def test_a_job_started_from_a_report_is_watched_by_the_same_worker(slots) -> None:
    watchers, reports = slots(), Reports()
    threads: list[str] = []

    def chain(key: int) -> Callable[[Outcome], None]:
        def deliver(outcome: Outcome) -> None:
            threads.append(threading.current_thread().name)
            reports(key)(outcome)
            if key < 5:
                watchers.launch(("/bin/true",), chain(key + 1), ENV)
        return deliver

    watchers.launch(("/bin/true",), chain(0), ENV)
    assert reports.wait(5) == Outcome(0)
    assert len(set(threads)) == 1 and threads[0].startswith("local-job")


def test_beyond_the_worker_cap_jobs_go_to_the_launcher(slots) -> None:
    watchers, reports = slots(max_workers=2), Reports()
    for key in range(5):
        watchers.launch(("/bin/sh", "-c", "sleep 0.2; echo done"), reports(key), ENV)
    names = {t.name for t in threading.enumerate()}
    assert sum(name.startswith("local-job") for name in names) == 2
    assert all(reports.wait(key) == Outcome(0, output="done\n") for key in range(5))


def test_kill_terms_then_kills_the_group(slots) -> None:
    watchers, reports = slots(), Reports()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        handle = watchers.launch((sys.executable, "-c", STUBBORN,
                                  str(listener.getsockname()[1])), reports(1), ENV)
        link, _ = listener.accept()  # it ignores SIGTERM from now on
        with link:
            pids = [int(word) for word in link.makefile().read().split()]
    began = time.monotonic()
    handle.kill()
    handle.kill()
    assert reports.wait(1).returncode == -signal.SIGKILL
    assert time.monotonic() - began < 2.0
    assert all(wait_gone(pid, 0.5) for pid in pids)


def test_kills_wait_out_their_grace_on_the_launcher_s_timers_not_a_thread_each(slots) -> None:
    watchers, reports = slots(), Reports()
    pids: list[int] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = str(listener.getsockname()[1])
        handles = [watchers.launch((sys.executable, "-c", STUBBORN, port), reports(n), ENV)
                   for n in range(3)]
        for _ in handles:
            link, _ = listener.accept()  # one of them ignores SIGTERM from now on
            with link:
                pids += [int(word) for word in link.makefile().read().split()]
    threads = set(threading.enumerate())
    for handle in handles:
        handle.kill()
    assert set(threading.enumerate()) - threads == set()
    assert [reports.wait(n).returncode for n in range(3)] == [-signal.SIGKILL] * 3
    assert all(wait_gone(pid, 0.5) for pid in pids)


def test_a_program_that_cannot_start_is_reported_at_once(slots) -> None:
    watchers, reports = slots(), Reports()
    handle = watchers.launch(("/no/such/program",), reports(1), ENV)
    assert "cannot start '/no/such/program'" in reports.wait(1, timeout=0).transport_error
    handle.kill()  # nothing to kill, no error


def test_a_nul_byte_is_the_callers_error_and_leaks_nothing(slots) -> None:
    watchers = slots()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError):
        watchers.launch(("/bin/echo", "a\0b"), Reports()(1), ENV)
    assert len(os.listdir("/proc/self/fd")) == before


def test_close_kills_what_runs_and_waits_for_its_report(slots) -> None:
    watchers, reports = slots(), Reports()
    handle = watchers.launch(("sleep", "300"), reports(1), ENV)
    pid = handle._job.pid
    watchers.close()
    assert reports.wait(1, timeout=0).returncode == -signal.SIGTERM
    assert wait_gone(pid, 0.5)


def test_pipes_held_by_an_escaped_process_are_given_up(slots) -> None:
    watchers, reports = slots(), Reports()
    # the child leaves for a session of its own (the group kill misses it) with our stdout
    escape = ("import os, time\nr, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n"
              "    os.write(w, b'x')\n    os.execvp('sleep', ['sleep', '31.5'])\nos.read(r, 1)")
    handle = watchers.launch((sys.executable, "-c", escape), reports(1), ENV)
    began = time.monotonic()
    assert reports.wait(1).returncode == 0
    assert 1.5 < time.monotonic() - began < 10
    for pid in _pids_running("sleep 31.5"):
        os.kill(pid, signal.SIGKILL)
    del handle


def _pids_running(command: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if cmdline.read().replace(b"\0", b" ").strip() == command.encode():
                        found.append(int(entry))
            except OSError:
                pass
    return found

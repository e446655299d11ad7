"""bench_ssh's tools that are not the benchmark itself: what a run costs (CPU of this process,
its children, the whole machine), the bare-ssh FLOOR, the facts printed with the table, and the
sweep that stops every process a run left behind.

Standard library only, like :mod:`_common`; imported by ``bench_ssh.py``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: its folder is on sys.path
    import _common as common

BenchError = common.BenchError
Result = tuple[float, float, float]  # wall s, own CPU s, children CPU s
HOSTS = 4
SLOTS = 4  # per host
TRUE = "/bin/true"
RUN_TIMEOUT = 900  # seconds for one run of one tool


def host_of(index: int) -> str:
    return f"node{index % HOSTS + 1}"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str) -> bool:
    """Still the same process, and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


def sweep(folder: Path) -> list[str]:
    """Kill every process whose command line names ``folder`` (ours: the folder is fresh):
    ssh clients and ControlMaster processes left by any tool. TERM, then KILL. Returns what
    it found, for the report."""
    marker = str(folder).encode()
    found: list[tuple[int, str, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                words = cmdline.read()
        except OSError:
            continue
        if marker in words:
            start = _start_time(int(entry))
            if start is not None:
                found.append((int(entry), start, words.replace(b"\0", b" ").decode(
                    errors="replace")[:120]))
    for signum in (signal.SIGTERM, signal.SIGKILL):
        live = [(pid, start) for pid, start, _ in found if _alive(pid, start)]
        for pid, start in live:
            with contextlib.suppress(OSError):
                if _start_time(pid) == start:
                    os.kill(pid, signum)
        deadline = time.monotonic() + 3.0
        while live and time.monotonic() < deadline:
            live = [(pid, start) for pid, start in live if _alive(pid, start)]
            time.sleep(0.02)
        if not live:
            break
    return [text for _, _, text in found]


# ----------------------------------------------------------------------------- costs


def cpu_seconds() -> tuple[float, float]:
    """(this process, its waited-for children) user + system seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (all processes: ours,
    the hosts' sshd sessions, and whatever else runs on the machine)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


class Floor:
    """The bare ssh loop: 16 threads, 4 per host, each reusing its host's warm master."""

    def __init__(self, ssh_config: Path, folder: Path) -> None:
        self.options = ["ssh", "-F", str(ssh_config), "-o", "ControlMaster=auto",
                        "-o", f"ControlPath={folder}/floor-%C", "-o", "ControlPersist=60"]

    def warm(self) -> None:
        """One master per host (ControlPersist keeps it after this first client exits)."""
        for index in range(HOSTS):
            result = subprocess.run([*self.options, host_of(index), TRUE], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            if result.returncode != 0:
                raise BenchError(f"floor: warming the master of {host_of(index)} failed: "
                                 f"{result.stderr.decode(errors='replace').strip()[-300:]}")

    def stop(self) -> None:
        for index in range(HOSTS):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([self.options[0], "-O", "exit", *self.options[1:], host_of(index)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)

    def run(self, jobs: int) -> Result:
        self.warm()  # untimed: the masters may have timed out since the last round
        failures: list[str] = []
        threads = []
        for host_index in range(HOSTS):
            host_jobs = len(range(host_index, jobs, HOSTS))
            for slot in range(SLOTS):
                share = host_jobs // SLOTS + (1 if slot < host_jobs % SLOTS else 0)
                threads.append(threading.Thread(target=self._worker,
                                                args=(host_of(host_index), share, failures)))
        own, children = cpu_seconds()
        start = time.perf_counter()
        common.start_and_join(threads)
        wall = time.perf_counter() - start
        own_after, children_after = cpu_seconds()
        if failures:
            raise BenchError(f"floor: {len(failures)} ssh runs failed, e.g. {failures[0]}")
        return wall, own_after - own, children_after - children

    def _worker(self, host: str, count: int, failures: list[str]) -> None:
        argv = [*self.options, host, TRUE]
        for _ in range(count):
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
            if result.returncode != 0:
                failures.append(f"exit {result.returncode}: "
                                f"{result.stderr.decode(errors='replace').strip()[-200:]}")


# ----------------------------------------------------------------------------- facts


def versions() -> str:
    def first_line(argv: list[str]) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return ((result.stdout or result.stderr).strip().splitlines() or ["unknown"])[0]

    return f"{first_line(['ssh', '-V'])}; {first_line(['parallel', '--version'])}"


def remote_facts(bed) -> str:  # bed: SshTestBed
    """Which python3 the remote shell finds (it runs lofarexec's wrapper) and its start-up."""
    script = ('command -v python3; s=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10; do '
              'python3 -I -S -c pass; done; e=$(date +%s%N); echo $(( (e - s) / 100000 ))')
    result = subprocess.run(bed.ssh_command("node1", script), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        return f"remote python3: unknown ({result.stderr.strip()[-200:]})"
    return (f"remote shell's python3 (runs lofarexec's launch wrapper): {lines[0]}, "
            f"`python3 -I -S -c pass` {int(lines[1]) / 100:.1f} ms on an idle core")


def profile_all_threads(run: Callable[[], Result], jobs: int, label: str, top: int = 25) -> None:
    """cProfile ``run()`` (one run of ``jobs`` jobs) in EVERY thread (the calling one and each
    thread started during the run: paramiko's transport and connection threads, the log
    server...), timed by each thread's own CPU time (``time.thread_time``), so waiting is left
    out; merged into one table. Each new thread gets its profiler through
    ``threading.setprofile``."""
    import cProfile
    import pstats

    profiles: list[cProfile.Profile] = []

    def start_profiler(*_: object) -> None:  # first profile event of a new thread
        profiler = cProfile.Profile(time.thread_time)
        profiles.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread

    before = set(threading.enumerate())
    main_profile = cProfile.Profile(time.thread_time)
    threading.setprofile(start_profiler)
    try:
        main_profile.enable()
        wall, _, _ = run()
        main_profile.disable()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    for thread in set(threading.enumerate()) - before:  # read each profile once it is finished
        thread.join(timeout=5.0)
    print(f"(profiled run: {wall:.3f} s wall; {len(profiles)} threads started during it)")
    print(f"--- cProfile, {label}, {jobs} jobs, all threads merged, CPU time per thread: "
          f"top {top} by own time (tottime) ---")
    stats = pstats.Stats(main_profile, stream=sys.stdout)
    for profiler in profiles:
        stats.add(profiler)
    stats.sort_stats("tottime").print_stats(top)


def print_setup(runs: dict[str, Callable[[int], Result]], best: dict[str, float], jobs: int,
                rounds: int, local: str) -> None:
    """Where a remote run's time goes: its set-up (a run of one job per host: the hosts' ssh
    connections and agents start inside it), and its jobs after that, against ``local``'s.
    Runs each of ``runs`` ``rounds`` more times (interleaved); info, not a target."""
    if jobs <= HOSTS:
        return
    setup: dict[str, list[float]] = {name: [] for name in runs}
    for name in common.interleaved(list(runs), rounds):
        setup[name].append(runs[name](HOSTS)[0])
    after = {name: (best[name] - min(setup[name])) / (jobs - HOSTS) * 1000 for name in runs}
    for name in runs:
        print(f"{name}: set-up (a run of {HOSTS} jobs, 1 per host, best of {rounds}) "
              f"{min(setup[name]) * 1000:.0f} ms; per job after it {after[name]:.3f} ms = "
              f"{after[name] / after[local]:.2f}x the local backend's (info)")

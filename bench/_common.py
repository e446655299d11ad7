"""What the benchmark scripts of this folder share: reporting, timing rounds, options, profiling.

Standard library only. The scripts import it as ``_common`` (their own folder is on
``sys.path`` when they run as ``python bench/NAME.py``) or, as part of a package, relatively.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

QUICK_NOTE = "(--quick: a smoke test; quote only full runs)"


class BenchError(Exception):
    """A run went wrong (not a slow run: a failed job, tool, worker or test bed)."""


# ----------------------------------------------------------------------------- prerequisites


def true_problems(true: str) -> list[str]:
    """A line if ``true`` (``/bin/true``) cannot be run."""
    if not os.access(true, os.X_OK):
        return [f"{true} is missing: apt-get install -y coreutils"]
    return []


def parallel_problems() -> list[str]:
    """A line if GNU parallel is missing or another ``parallel`` stands in its place."""
    parallel = shutil.which("parallel")
    if parallel is None:
        return ["GNU parallel is missing: apt-get install -y parallel"]
    try:
        version = subprocess.run([parallel, "--version"], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "GNU parallel" not in version:
        return [f"{parallel} is not GNU parallel (moreutils' parallel?): "
                "apt-get install -y parallel"]
    return []


def report_problems(name: str, problems: list[str]) -> bool:
    """Print each problem to stderr, prefixed with the script's name; True if there were any."""
    for problem in problems:
        print(f"{name}: {problem}", file=sys.stderr)
    return bool(problems)


# ----------------------------------------------------------------------------- options


def parse_jobs_rounds(description: str, argv: list[str] | None, *, quick_jobs: int,
                      quick_rounds: int, default_jobs: int, default_rounds: int,
                      profile_help: str) -> tuple[argparse.Namespace, int, int]:
    """``--quick``, ``--jobs``, ``--rounds``, ``--profile``; returns (options, jobs, rounds)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help=f"{quick_jobs} jobs, {quick_rounds} round: a smoke test, not a figure")
    parser.add_argument("--jobs", type=int, help=f"jobs per run (default {default_jobs})")
    parser.add_argument("--rounds", type=int, help=f"runs of each tool (default {default_rounds})")
    parser.add_argument("--profile", action="store_true", help=profile_help)
    options = parser.parse_args(argv)
    jobs = options.jobs or (quick_jobs if options.quick else default_jobs)
    rounds = options.rounds or (quick_rounds if options.quick else default_rounds)
    if jobs < 1 or rounds < 1 or rounds > 20:
        parser.error("--jobs must be >= 1 and --rounds between 1 and 20")
    return options, jobs, rounds


# ----------------------------------------------------------------------------- lofarexec config


def write_pipeline_cfg(path: Path, folder: Path, method: str, slots: int, job_name: str,
                       extra: str = "") -> Path:
    """A pipeline.cfg with ``[remote] method`` and ``max_per_node``, then ``extra`` verbatim."""
    path.write_text(
        "[DEFAULT]\n"
        f"runtime_directory = {folder}/runtime\n"
        "[remote]\n"
        f"method = {method}\n"
        f"max_per_node = {slots}\n"
        "[layout]\n"
        f"job_directory = {folder}/jobs/{job_name}\n"
        f"{extra}",
        encoding="utf-8",
    )
    return path


def load_pipeline_config(config_path: Path, job_name: str):  # -> PipelineConfig
    from lofarexec.config import load_config

    return load_config(config_path, job_name=job_name,
                       start_time=datetime.datetime.now().replace(microsecond=0).isoformat())


def count_states(done: dict) -> dict[object, int]:
    """How many of the finished jobs ended in each state."""
    states: dict[object, int] = {}
    for job in done.values():
        states[job.results.get("state")] = states.get(job.results.get("state"), 0) + 1
    return states


# ----------------------------------------------------------------------------- timing


def interleaved(names: Sequence[Any], rounds: int) -> Iterator[Any]:
    """Each name once per round, the order rotated by one every round."""
    names = list(names)
    for round_number in range(rounds):
        shift = round_number % len(names)
        yield from names[shift:] + names[:shift]


def run_fed(argv: list[str], jobs: int, timeout: float,
            sample: Callable[[], Any] | None = None) -> tuple[float, Any, Any]:
    """``argv`` fed the arguments 1..jobs on stdin, one a line; (wall seconds, ``sample()``
    just before the start and just after the end, or None twice)."""
    arguments = "".join(f"{i}\n" for i in range(1, jobs + 1)).encode()
    before = sample() if sample is not None else None
    start = time.perf_counter()
    result = subprocess.run(argv, input=arguments, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=timeout)
    wall = time.perf_counter() - start
    after = sample() if sample is not None else None
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {result.returncode}: "
                         f"{result.stderr.decode(errors='replace').strip()[-500:]}")
    return wall, before, after


def start_and_join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ----------------------------------------------------------------------------- reporting


def machine() -> str:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"nproc {usable} (cpu_count {cpus}), {model or platform.machine()}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def load_text() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def measured_tree() -> Path:
    """The tree whose ``lofarexec`` this process would import (``PYTHONPATH`` first, as the
    runs see it), found without importing it; this checkout if none is found."""
    import importlib.util

    spec = importlib.util.find_spec("lofarexec")
    if spec is None or spec.origin is None:
        return Path(__file__).resolve().parent.parent
    return Path(spec.origin).resolve().parent.parent


def revision() -> str:
    """The commit of the code measured: that of the tree ``lofarexec`` is imported from, which
    is not this checkout's when ``PYTHONPATH`` points at another tree (an A/B run)."""
    root = measured_tree()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel",
                               "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.split()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "lofarexec", "backends"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if len(head) != 2 or Path(head[0]).resolve() != root:
        return f"the tree at {root} (not a git checkout)"
    note = " + uncommitted changes in lofarexec/ or backends/" if dirty else ""
    where = "" if root == Path(__file__).resolve().parent.parent else f" (the tree at {root})"
    return f"{head[1]}{note}{where}"


def print_header(title: str, tools: str | None = None) -> None:
    """The title line, then machine, (tools,) revision and date."""
    print(title)
    print(f"machine: {machine()}")
    if tools is not None:
        print(f"tools: {tools}")
    print(f"lofarexec revision: {revision()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")


def print_load(before: str, after: str | None = None) -> None:
    print(f"load average before / after: {before} / {load_text() if after is None else after}")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def wall_head(width: int) -> str:
    """The first columns of a table of wall times: tool, best, median, ms/job."""
    return f"{'tool':<{width}}  {'best s':>7}  {'median s':>8}  {'ms/job':>7}"


def wall_columns(name: str, width: int, walls: list[float], jobs: int) -> str:
    """The first columns of ``name``'s row under :func:`wall_head`."""
    best = min(walls)
    return (f"{name:<{width}}  {best:7.3f}  {statistics.median(walls):8.3f}  "
            f"{best / jobs * 1000:7.3f}")


def runs_text(walls: list[float]) -> str:
    return " ".join(f"{value:.3f}" for value in walls)


# ----------------------------------------------------------------------------- profiling


def profile_with_launcher(run: Callable[[], Any]) -> tuple[Any, Any, Any]:
    """Call ``run()`` under cProfile: the calling (scheduler) thread, and every thread started
    while it runs (the launcher's loop, the local backend's job workers, the log server, the
    journal's flusher, the agents' loop), merged.

    cProfile sees one thread only, so ``threading.Thread.run`` is wrapped, for this process and
    this call only, to run each new thread under a profiler of its own. Returns (run's result,
    the scheduler thread's profile, the other threads' merged ``pstats.Stats`` or None if no
    thread was started).
    """
    import cProfile
    import pstats

    thread_profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def profiled_run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        thread_profiles.append(profile)  # list.append is atomic under the GIL
        profile.enable()
        try:
            original(thread)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    try:
        main_profile.enable()
        result = run()
        main_profile.disable()
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]
    if not thread_profiles:
        return result, main_profile, None
    merged = pstats.Stats(thread_profiles[0])
    for profile in thread_profiles[1:]:
        merged.add(profile)
    print(f"(profiled: the calling thread and {len(thread_profiles)} others, merged)")
    return result, main_profile, merged


def print_thread_profiles(main_profile: Any, others: Any, jobs: int, top: int) -> None:
    import pstats

    for label, stats in (("scheduler thread", main_profile),
                         ("all other threads, merged", others)):
        if stats is None:
            print(f"--- {label}: none was started ---")
            continue
        print(f"--- cProfile, {label}, {jobs} jobs: top {top} by own time (tottime) ---")
        if not isinstance(stats, pstats.Stats):
            stats = pstats.Stats(stats)
        stats.stream = sys.stdout
        stats.sort_stats("tottime").print_stats(top)

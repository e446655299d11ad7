#!/usr/bin/env python3
"""bench_local: many tiny jobs on one host through the local backend, against the usual tools.

2,000 ``/bin/true`` jobs on ONE host with 2 slots, run in the same process run by:

* lofarexec, the way a recipe's ``_schedule_jobs`` runs them: ``JobRunner.schedule`` with a
  ``PipelineConfig`` read from a temporary pipeline.cfg (``[remote] method = local``,
  ``max_per_node = 2``), i.e. plugin manager + local backend + log server + scheduler + journal;
  ``ComputeJob(host="node1", command="/bin/true")`` (the node's argv gets the log host and port
  appended; ``/bin/true`` ignores them). Timed: building the jobs, the runner and ``schedule``.
  The config is read once, outside the timing, as a recipe does in ``go()``;
* GNU parallel: ``parallel --will-cite -j2 /bin/true`` with the arguments 1..N on stdin;
* xargs: ``xargs -P2 -n1 /bin/true`` with the arguments 1..N on stdin;
* a bare loop of ``subprocess.run(["/bin/true"])`` in 2 threads (the floor for Python).

Plus lofarexec twice more, to show what live progress costs (issue 15): with progress off
(``--quiet``) and with rich's live display forced on (what a terminal gets, drawn into
/dev/null); the first row has the default off a terminal (a progress line logged now and then).

Plus, for information only, lofarexec in a fresh interpreter (``python -c`` that imports
lofarexec, reads the config and runs the batch), so that interpreter start-up is counted as it
is for parallel and xargs.

Each tool runs ``--rounds`` times (default 3), interleaved (one run of each tool per round, the
order rotated every round); the best wall time of each is compared.

Usage::

    python bench/bench_local.py [--quick] [--jobs N] [--rounds R]

Exit status: 0 after a complete run (targets met or not: the table says which), 1 if a tool
it needs is missing, 2 if a run went wrong (a job or a tool failed).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: its folder is on sys.path
    import _common as common

BenchError = common.BenchError

SLOTS = 2
DEFAULT_JOBS = 2000
DEFAULT_ROUNDS = 3
QUICK_JOBS = 200
QUICK_ROUNDS = 1
TARGET_VS_PARALLEL = 5.0  # lofarexec at least this many times faster than GNU parallel
TARGET_VS_BARE = 1.3  # lofarexec at most this many times slower than the bare loop
TRUE = "/bin/true"


# ----------------------------------------------------------------------------- prerequisites


def missing_tools() -> list[str]:
    """One line per missing prerequisite, each saying how to install it."""
    problems = common.true_problems(TRUE)
    if shutil.which("xargs") is None:
        problems.append("xargs is missing: apt-get install -y findutils")
    problems += common.parallel_problems()
    try:
        import lofarexec.run.runner  # noqa: F401
    except ImportError as exc:
        problems.append(f"lofarexec cannot be imported ({exc}): pip install -e <repo root>")
    return problems


# ----------------------------------------------------------------------------- the contenders


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_config(folder: Path) -> Path:
    return common.write_pipeline_cfg(folder / "pipeline.cfg", folder, "local", SLOTS,
                                     "bench_local")


def load(config_path: Path):  # -> PipelineConfig
    return common.load_pipeline_config(config_path, "bench_local")


def _devnull():  # -> IO[str]: where the live display is drawn (kept open for the bench)
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = open(os.devnull, "w")  # noqa: SIM115
    return _DEVNULL


_DEVNULL = None


def run_lofarexec(config, jobs: int, progress: str = "log") -> tuple[float, float]:
    """One batch through JobRunner.schedule; (wall seconds, control-process CPU seconds).

    ``progress``: "log" is what a recipe gets off a terminal (the default, a timer logging a
    line now and then); "off" is ``--quiet``; "live" is what it gets on a terminal (rich's
    live display, forced on and drawn into /dev/null)."""
    from lofarexec.job import ComputeJob
    from lofarexec.run.progress import ProgressReporter
    from lofarexec.run.runner import JobRunner

    class LiveRunner(JobRunner):
        def _progress(self) -> list[ProgressReporter]:
            return [ProgressReporter(self.logger, stream=_devnull(), terminal=True)]

    cpu = cpu_seconds()
    start = time.perf_counter()
    batch = [ComputeJob(host="node1", command=TRUE) for _ in range(jobs)]
    runner_class = LiveRunner if progress == "live" else JobRunner
    runner = runner_class(config, recipe_name="bench_local", error=threading.Event(),
                          progress=progress != "off")
    done = runner.schedule(batch)
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    states = common.count_states(done)
    if len(done) != jobs or states != {"succeeded": jobs} or runner.error.is_set():
        raise BenchError(f"lofarexec: expected {jobs} succeeded jobs, got {states}")
    return wall, cpu


CHILD_CODE = """
import sys, threading, time
t0 = time.perf_counter()
from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
config = load_config(sys.argv[1], job_name="bench_local", start_time="2000-01-01T00:00:00")
jobs = [ComputeJob(host="node1", command="/bin/true") for _ in range(int(sys.argv[2]))]
runner = JobRunner(config, recipe_name="bench_local", error=threading.Event())
done = runner.schedule(jobs)
bad = [j for j in done.values() if j.results.get("state") != "succeeded"]
sys.exit(1 if bad or len(done) != len(jobs) or runner.error.is_set() else 0)
"""


def run_lofarexec_process(config_path: Path, jobs: int) -> tuple[float, float]:
    """The same batch in a fresh ``python -c``: interpreter start and imports counted."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD_CODE, str(config_path), str(jobs)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=600)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"lofarexec (fresh interpreter) exited {result.returncode}: "
                         f"{result.stderr.strip()[-500:]}")
    return wall, float("nan")


def run_tool(argv: list[str], jobs: int) -> tuple[float, float]:
    """``argv`` fed the arguments 1..jobs on stdin, one a line."""
    wall, _, _ = common.run_fed(argv, jobs, 600)
    return wall, float("nan")


def run_bare_loop(jobs: int) -> tuple[float, float]:
    """``subprocess.run([TRUE])`` in SLOTS threads; (wall seconds, CPU seconds of this process)."""
    failures: list[int] = []
    shares = [jobs // SLOTS + (1 if i < jobs % SLOTS else 0) for i in range(SLOTS)]

    def worker(count: int) -> None:
        for _ in range(count):
            code = subprocess.run([TRUE]).returncode
            if code != 0:
                failures.append(code)

    cpu = cpu_seconds()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    common.start_and_join(threads)
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    if failures:
        raise BenchError(f"bare loop: {len(failures)} runs of {TRUE} failed")
    return wall, cpu


# ----------------------------------------------------------------------------- reporting


def main(argv: list[str] | None = None) -> int:
    options, jobs, rounds = common.parse_jobs_rounds(
        __doc__.split("\n\n")[0], argv, quick_jobs=QUICK_JOBS, quick_rounds=QUICK_ROUNDS,
        default_jobs=DEFAULT_JOBS, default_rounds=DEFAULT_ROUNDS,
        profile_help="also print cProfile's top functions of one lofarexec run, for the "
                     "scheduler thread and for every thread it starts, merged")

    if common.report_problems("bench_local", missing_tools()):
        return 1

    parallel = shutil.which("parallel")
    xargs = shutil.which("xargs")
    assert parallel is not None and xargs is not None
    folder = Path(tempfile.mkdtemp(prefix="bench_local-"))
    try:
        config_path = write_config(folder)
        config = load(config_path)
        contenders = {
            "lofarexec (JobRunner.schedule, local)": lambda n: run_lofarexec(config, n),
            "GNU parallel -j2": lambda n: run_tool(
                [parallel, "--will-cite", "-j", str(SLOTS), TRUE], n),
            "xargs -P2 -n1": lambda n: run_tool([xargs, f"-P{SLOTS}", "-n1", TRUE], n),
            "bare loop, subprocess.run x 2 threads": run_bare_loop,
            "lofarexec, progress off (--quiet)": lambda n: run_lofarexec(config, n, "off"),
            "lofarexec, live progress (terminal)": lambda n: run_lofarexec(config, n, "live"),
            "lofarexec, fresh interpreter (info)": lambda n: run_lofarexec_process(config_path, n),
        }
        names = list(contenders)
        common.print_header(f"bench_local: {jobs} x {TRUE} on 1 host, {SLOTS} slots; "
                            f"best of {rounds} (interleaved)")
        print(flush=True)
        load_before = common.load_text()
        for name in names:  # warm-up: page cache, imports, perl modules; not timed
            contenders[name](min(jobs, 20))
        walls: dict[str, list[float]] = {name: [] for name in names}
        cpus: dict[str, list[float]] = {name: [] for name in names}
        for name in common.interleaved(names, rounds):
            wall, cpu = contenders[name](jobs)
            walls[name].append(wall)
            cpus[name].append(cpu)
    except BenchError as exc:
        print(f"bench_local: run failed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    best = {name: min(values) for name, values in walls.items()}
    width = max(len(name) for name in names)
    print(f"{common.wall_head(width)}  {'CPU ms/job':>10}  runs (s)")
    for name in names:
        cpu = min(cpus[name])
        cpu_text = "-" if cpu != cpu else f"{cpu / jobs * 1000:.3f}"
        print(f"{common.wall_columns(name, width, walls[name], jobs)}  {cpu_text:>10}  "
              f"{common.runs_text(walls[name])}")
    print("(ms/job: best wall / jobs. CPU ms/job: least CPU time of the benchmarking process "
          "itself, all its threads, children excluded)")
    common.print_load(load_before)
    print()
    lofar = best[names[0]]
    vs_parallel = best["GNU parallel -j2"] / lofar
    vs_xargs = best["xargs -P2 -n1"] / lofar
    vs_bare = lofar / best["bare loop, subprocess.run x 2 threads"]
    overhead_ms = (lofar - best["bare loop, subprocess.run x 2 threads"]) / jobs * 1000
    fresh = best["lofarexec, fresh interpreter (info)"]
    verdict = common.verdict

    print(f"lofarexec vs GNU parallel : {vs_parallel:.2f}x faster   "
          f"(target >= {TARGET_VS_PARALLEL:g}x: {verdict(vs_parallel >= TARGET_VS_PARALLEL)})")
    print(f"lofarexec vs bare loop    : {vs_bare:.2f}x the bare loop's time   "
          f"(target <= {TARGET_VS_BARE:g}x: {verdict(vs_bare <= TARGET_VS_BARE)})")
    print(f"xargs -P2 time / lofarexec time: {vs_xargs:.2f} (info; > 1 means lofarexec is faster)")
    print(f"GNU parallel time / lofarexec-in-a-fresh-interpreter time: "
          f"{best['GNU parallel -j2'] / fresh:.2f} (info)")
    print(f"per-job overhead over the bare loop: {overhead_ms:.3f} ms wall "
          f"({lofar / jobs * 1000:.3f} ms/job vs "
          f"{best['bare loop, subprocess.run x 2 threads'] / jobs * 1000:.3f} ms/job)")
    if options.quick:
        print(common.QUICK_NOTE)
    if options.profile:
        print(flush=True)
        profile(jobs)
    return 0


def profile(jobs: int, top: int = 20) -> None:
    """cProfile one lofarexec run: the calling (scheduler) thread, and every
    thread started during the run, merged."""
    folder = Path(tempfile.mkdtemp(prefix="bench_local-prof-"))
    try:
        config = load(write_config(folder))
        _, main_profile, launcher_profile = common.profile_with_launcher(
            lambda: run_lofarexec(config, jobs))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    common.print_thread_profiles(main_profile, launcher_profile, jobs, top)


if __name__ == "__main__":
    sys.exit(main())

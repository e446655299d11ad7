#!/usr/bin/env python3
"""bench_scheduler: the scheduler's own cost, with jobs that end the moment they start.

100,000 jobs over 1,000 hosts (job i on host i mod 1,000), 4 slots per host, measured four ways:

* ``scheduler``: ``lofarexec.run.scheduler.Scheduler`` with the in-process ``MockBackend()`` (ends
  each job at once), a trivial ``prepare`` that builds a ``LaunchRequest`` and
  ``Limits(per_host=4)``. Timed: ``Scheduler.run`` only.
* ``runner``: the full ``JobRunner.schedule`` with ``[remote] method = mock`` and
  ``max_per_node = 4`` from a temporary pipeline.cfg: plugin manager, log server (a token
  registered per job), plugin hooks per job, the journal (one flushed JSON line per job).
  Timed: the ``schedule`` call.
* ``ref-deque``: the reference floor, so figures can be compared across machines: for each job,
  append it to a deque and pop it.
* ``baseline``: no jobs at all; only the RSS of an interpreter that imported lofarexec.

The 100,000 ``ComputeJob`` objects are built before the timed part. Every measurement runs in a
fresh subprocess (this script with ``--worker``):

* time: best of ``--rounds`` (default 3) runs, interleaved; µs per job = wall / jobs;
* peak RSS: ``getrusage(RUSAGE_SELF).ru_maxrss`` of each of those timing subprocesses (the
  largest is reported), the whole process: interpreter, imports, jobs and run;
* tracemalloc peak: one more subprocess per kind, tracing from before the jobs are built to the
  end of the run (tracing slows the run, so it is never timed).

``--profile`` also prints the cProfile top of the scheduler and of the runner (one run each).
``--large`` is issue 17's scale, 1,000,000 jobs over 10,000 hosts (minutes, not seconds);
``--jobs``/``--hosts`` set any other. Memory per job is the tracemalloc peak less what the
built jobs hold, over the number of jobs: what the run itself holds at its worst.

Usage::

    python bench/bench_scheduler.py [--quick | --large | --jobs N --hosts H] [--profile]

Exit status: 0 after a complete run (targets met or not: the table says which), 1 if something
it needs is missing, 2 if a run went wrong (a job did not succeed, a worker failed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: its folder is on sys.path
    import _common as common

BenchError = common.BenchError

JOBS = 100_000
HOSTS = 1_000
SLOTS = 4
QUICK_JOBS = 10_000
QUICK_HOSTS = 100
LARGE_JOBS = 1_000_000
LARGE_HOSTS = 10_000
DEFAULT_ROUNDS = 3
TARGET_US_PER_JOB = 20.0
TARGET_PEAK_MB = 300.0  # at the default 100,000 jobs
TARGET_RUNNER_US_PER_JOB = 15.0  # issue 17: the whole JobRunner.schedule, at 1M x 10k
TARGET_RUNNER_KB_PER_JOB = 0.6
KINDS = ("scheduler", "runner", "ref-deque")
MB = 1024 * 1024


# ----------------------------------------------------------------------------- the workloads


def build_jobs(jobs: int, hosts: int) -> list:
    from lofarexec.job import ComputeJob

    names = [f"node{index:04d}" for index in range(hosts)]
    return [ComputeJob(host=names[index % hosts], command="/bin/true") for index in range(jobs)]


def check_succeeded(jobs: list, label: str) -> None:
    if label == "ref-deque":
        return  # the reference runs nothing
    bad = sum(1 for job in jobs if job.results.get("state") != "succeeded")
    if bad:
        raise BenchError(f"{label}: {bad} of {len(jobs)} jobs did not succeed")


def prepare_scheduler():
    """What the timed part needs for the bare scheduler; returns a callable running the batch."""
    from lofarexec.backend import LaunchRequest
    from lofarexec.run.scheduler import Limits, Scheduler
    from lofarexec.testing.mock import MockBackend

    environment: dict[str, str] = {}

    def prepare(job) -> LaunchRequest:
        return LaunchRequest(job_id=job.id, host=job.host, argv=("/bin/true",),
                             environment=environment, token="", recipe_name="bench")

    def run(jobs: list) -> None:
        scheduler = Scheduler(MockBackend(), prepare, limits=Limits(per_host=SLOTS))
        scheduler.run(jobs)
        if scheduler.error.is_set():
            raise BenchError("scheduler: the error flag is set")

    return run


def prepare_runner(folder: Path):
    import threading

    from lofarexec.config import load_config
    from lofarexec.run.runner import JobRunner

    path = common.write_pipeline_cfg(folder / "pipeline.cfg", folder, "mock", SLOTS,
                                     "bench_scheduler")
    config = load_config(path, job_name="bench_scheduler", start_time="2000-01-01T00:00:00")

    def run(jobs: list) -> None:
        runner = JobRunner(config, recipe_name="bench_scheduler", error=threading.Event())
        done = runner.schedule(jobs)
        if len(done) != len(jobs) or runner.error.is_set():
            raise BenchError("runner: not every job came back, or the error flag is set")

    return run


def prepare_ref():
    def run(jobs: list) -> None:
        queue: deque = deque()
        append, popleft = queue.append, queue.popleft
        for job in jobs:
            append(job)
            popleft()

    return run


def worker(kind: str, measure: str, jobs: int, hosts: int) -> dict:
    """One measurement, in this (fresh) process; returns the figures as a dict."""
    folder = Path(tempfile.mkdtemp(prefix="bench_scheduler-"))
    try:
        if kind == "baseline":
            import lofarexec.run.runner  # noqa: F401
            import lofarexec.run.scheduler  # noqa: F401
            import lofarexec.testing.mock  # noqa: F401

            return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        run = {"scheduler": prepare_scheduler, "runner": lambda: prepare_runner(folder),
               "ref-deque": prepare_ref}[kind]()
        if measure == "trace":
            import tracemalloc

            tracemalloc.start()
            batch = build_jobs(jobs, hosts)
            after_build = tracemalloc.get_traced_memory()[0]
            run(batch)
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            check_succeeded(batch, kind)
            return {"trace_peak": peak, "trace_after_build": after_build,
                    "trace_end": current}
        start = time.perf_counter()
        batch = build_jobs(jobs, hosts)
        build = time.perf_counter() - start
        start = time.perf_counter()
        run(batch)
        wall = time.perf_counter() - start
        check_succeeded(batch, kind)
        return {"wall": wall, "build": build,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def spawn(kind: str, measure: str, jobs: int, hosts: int) -> dict:
    """Run one measurement in a fresh interpreter."""
    argv = [sys.executable, os.path.abspath(__file__), "--worker", kind, measure,
            str(jobs), str(hosts)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise BenchError(f"worker {kind}/{measure} exited {result.returncode}: "
                         f"{result.stderr.strip()[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def profile(jobs: int, hosts: int, top: int = 18) -> None:
    import cProfile
    import pstats

    folder = Path(tempfile.mkdtemp(prefix="bench_scheduler-prof-"))
    try:
        for kind, run in (("scheduler", prepare_scheduler()),
                          ("runner", prepare_runner(folder))):
            batch = build_jobs(jobs, hosts)
            profiler = cProfile.Profile()
            profiler.enable()
            run(batch)
            profiler.disable()
            check_succeeded(batch, kind)
            print(f"--- cProfile, {kind}, {jobs} jobs: top {top} by own time (tottime) ---")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)
            print(f"--- cProfile, {kind}: top {top} by cumulative time ---")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(top)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- reporting


def missing() -> list[str]:
    try:
        import lofarexec.run.runner  # noqa: F401
        import lofarexec.run.scheduler  # noqa: F401
        import lofarexec.testing.mock  # noqa: F401
    except ImportError as exc:
        return [f"lofarexec cannot be imported ({exc}): pip install -e <repo root>"]
    from lofarexec.plugin.manager import build_plugin_manager

    try:
        build_plugin_manager().backends.get("mock")
    except Exception as exc:  # PluginError: the entry point is not installed
        return [f"the 'mock' backend is not registered ({exc}): pip install -e <repo root>"]
    return []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--worker"]:
        kind, measure, jobs, hosts = args[1], args[2], int(args[3]), int(args[4])
        print(json.dumps(worker(kind, measure, jobs, hosts)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_JOBS} jobs over {QUICK_HOSTS} hosts, 1 round: a smoke test")
    parser.add_argument("--large", action="store_true",
                        help=f"{LARGE_JOBS} jobs over {LARGE_HOSTS} hosts (issue 17's scale)")
    parser.add_argument("--jobs", type=int, help=f"jobs (default {JOBS})")
    parser.add_argument("--hosts", type=int, help=f"hosts (default {HOSTS})")
    parser.add_argument("--rounds", type=int,
                        help=f"timing runs per kind (default {DEFAULT_ROUNDS})")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile's top functions for scheduler and runner")
    options = parser.parse_args(args)
    jobs, hosts = ((QUICK_JOBS, QUICK_HOSTS) if options.quick
                   else (LARGE_JOBS, LARGE_HOSTS) if options.large else (JOBS, HOSTS))
    jobs, hosts = options.jobs or jobs, options.hosts or hosts
    if jobs < 1 or hosts < 1:
        parser.error("--jobs and --hosts must be at least 1")
    rounds = options.rounds or (1 if options.quick else DEFAULT_ROUNDS)
    if not 1 <= rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if common.report_problems("bench_scheduler", missing()):
        return 1

    common.print_header(f"bench_scheduler: {jobs} jobs over {hosts} hosts, {SLOTS} slots each, "
                        f"mock backend; best of {rounds} (interleaved, a fresh process each)")
    print(flush=True)
    timings: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    traces: dict[str, dict] = {}
    load_before = common.load_text()
    try:
        baseline = spawn("baseline", "time", 0, 1)
        for kind in common.interleaved(KINDS, rounds):
            timings[kind].append(spawn(kind, "time", jobs, hosts))
        for kind in KINDS:
            traces[kind] = spawn(kind, "trace", jobs, hosts)
    except BenchError as exc:
        print(f"bench_scheduler: run failed: {exc}", file=sys.stderr)
        return 2

    labels = {"scheduler": "Scheduler.run + MockBackend",
              "runner": "JobRunner.schedule, method=mock",
              "ref-deque": "reference: deque append+pop"}
    width = max(len(label) for label in labels.values())
    common.print_load(load_before)
    print(f"{'what':<{width}}  {'best s':>7}  {'us/job':>7}  {'x ref':>6}  "
          f"{'tracemalloc peak MB':>19}  {'peak RSS MB':>11}  runs (s)")
    best = {kind: min(t["wall"] for t in timings[kind]) for kind in KINDS}
    rss = {kind: max(t["maxrss_kb"] for t in timings[kind]) / 1024 for kind in KINDS}
    peak = {kind: traces[kind]["trace_peak"] / MB for kind in KINDS}
    for kind in KINDS:
        runs = common.runs_text([t["wall"] for t in timings[kind]])
        print(f"{labels[kind]:<{width}}  {best[kind]:7.3f}  {best[kind] / jobs * 1e6:7.2f}  "
              f"{best[kind] / best['ref-deque']:6.0f}  {peak[kind]:19.1f}  {rss[kind]:11.1f}  "
              f"{runs}")
    build = min(t["build"] for kind in KINDS for t in timings[kind])
    print(f"(building the {jobs} ComputeJobs, untimed above: {build:.3f} s, "
          f"{build / jobs * 1e6:.2f} us/job; tracemalloc after building them: "
          f"{traces['ref-deque']['trace_after_build'] / MB:.1f} MB; RSS of an interpreter that "
          f"only imported lofarexec: {baseline['maxrss_kb'] / 1024:.1f} MB)")
    print()
    verdict = common.verdict

    for kind in ("scheduler", "runner"):
        us = best[kind] / jobs * 1e6
        worst = max(peak[kind], rss[kind])
        note = "" if kind == "scheduler" else "  (targets are for the scheduler; info)"
        print(f"{labels[kind]}: {us:.2f} us/job (target < {TARGET_US_PER_JOB:g}: "
              f"{verdict(us < TARGET_US_PER_JOB)}); peak tracemalloc {peak[kind]:.1f} MB, "
              f"RSS {rss[kind]:.1f} MB (target < {TARGET_PEAK_MB:g} for both: "
              f"{verdict(worst < TARGET_PEAK_MB)}){note}")
    held = {kind: (traces[kind]["trace_peak"] - traces[kind]["trace_after_build"]) / jobs / 1024
            for kind in KINDS}
    print(f"held by the run at its peak, beyond the built jobs: scheduler "
          f"{held['scheduler']:.3f} KB/job, runner {held['runner']:.3f} KB/job")
    runner_us = best["runner"] / jobs * 1e6
    print(f"issue 17, whole JobRunner.schedule (set for 1M jobs x 10k hosts; this run {jobs} x "
          f"{hosts}): {runner_us:.2f} us/job (target <= {TARGET_RUNNER_US_PER_JOB:g}: "
          f"{verdict(runner_us <= TARGET_RUNNER_US_PER_JOB)}), {held['runner']:.3f} KB/job "
          f"(target <= {TARGET_RUNNER_KB_PER_JOB:g}: "
          f"{verdict(held['runner'] <= TARGET_RUNNER_KB_PER_JOB)})")
    hooks = (best["runner"] - best["scheduler"]) / jobs * 1e6
    print(f"cost of hooks + journal + log-server registration: {hooks:.2f} us/job "
          f"(runner minus scheduler)")
    medians = ", ".join(f"{kind} {statistics.median(t['wall'] for t in timings[kind]):.3f} s"
                        for kind in KINDS)
    print(f"median walls: {medians}")
    if options.quick:
        print(common.QUICK_NOTE)
    if options.profile:
        print(flush=True)
        profile(jobs, hosts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

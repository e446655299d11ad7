#!/usr/bin/env python3
"""bench_logrecv: the master's CPU per node log record, with many nodes logging at full speed.

A real :class:`lofarexec.channel.logserver.LogServer` in this process (the master), with the
root logger set up as a run with ``[logging] log_file`` has it: a file handler at DEBUG with the
run's format, and the console handler at WARNING on stderr. ``--nodes`` (default 8) real node
processes (a :class:`lofarexec.node.LOFARnode` subclass, started as a run starts a node: job id,
token and host in the environment) each log ``--records`` (default 100,000) INFO records as fast
as they can, all at once. Measured:

* master CPU: ``getrusage(RUSAGE_SELF)`` user + sys, from before the nodes start to the moment
  every node's channel is closed (every record handled); also the log server thread's own CPU
  (its thread clock). Per record = CPU / records.
* records/s: records / wall time over the same span;
* each node's own wall time to log its records (back-pressure shows here: a node is slowed to
  the receiver's pace);
* none lost: the server's count per job, and the node lines in the log file, == records sent.

Usage::

    python bench/bench_logrecv.py [--nodes N] [--records N] [--rounds N] [--quick] [--profile]

``--profile`` prints the cProfile top of the log server's thread (one extra run). Exit status 0
after a complete run (target met or not: the table says), 2 if a record went missing or a node
failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import QUICK_NOTE, load_text, print_header, print_load, verdict  # noqa: E402

from lofarexec.channel.logserver import LogServer  # noqa: E402
from lofarexec.channel.protocol import ENV_HOST, ENV_JOB_ID, ENV_TOKEN  # noqa: E402
from lofarexec.recipe import DATE_FORMAT, LOG_FORMAT  # noqa: E402

TARGET_US = 8.0
RECIPE = "bench_logrecv"

NODE_SCRIPT = '''
import sys, time
from lofarexec.node import LOFARnode

class Chatty(LOFARnode):
    def run(self, count):
        log = self.logger.info
        for index in range(int(count)):
            log("record %d of a chatty node, some text to make it a realistic line", index)
        return 0

started = time.perf_counter()
code = Chatty(sys.argv[1], sys.argv[2]).run_with_logging(sys.argv[3])
print(f"{time.perf_counter() - started:.3f}", flush=True)
sys.exit(code)
'''


def _thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set_up_logging(log_file: Path) -> logging.FileHandler:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    console.setLevel(logging.WARNING)
    root.addHandler(console)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def run_once(folder: Path, nodes: int, records: int, profile: bool) -> dict[str, object]:
    """One run: start the server and the nodes, wait for every record; return the figures."""
    log_file = folder / f"run-{time.monotonic_ns()}.log"
    handler = _set_up_logging(log_file)
    script = folder / "chatty_node.py"
    script.write_text(NODE_SCRIPT)
    server = LogServer(recipe_name=RECIPE)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        original = server._serve

        def profiled() -> None:
            profiler.enable()
            try:
                original()
            finally:
                profiler.disable()

        server._serve = profiled  # type: ignore[method-assign]
    server.start()
    try:
        host, port = server.address
        tokens = {job: server.register_job(job, f"node{job:02d}") for job in range(nodes)}
        env_base = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        wall0, cpu0 = time.perf_counter(), _process_cpu()
        assert server._thread is not None
        thread_cpu0 = _thread_cpu(server._thread)
        procs = []
        for job, token in tokens.items():
            env = {**env_base, ENV_JOB_ID: str(job), ENV_TOKEN: token, ENV_HOST: f"node{job:02d}"}
            procs.append(subprocess.Popen(
                [sys.executable, str(script), host, str(port), str(records)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        node_walls: list[float] = []
        failures = []
        for job, proc in enumerate(procs):
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                failures.append(f"node {job} exited {proc.returncode}: {err.strip()[-300:]}")
            else:
                node_walls.append(float(out.strip().splitlines()[-1]))
            server.job_exited(job)
        for job in tokens:
            if not server.wait_job_closed(job, timeout=120):
                failures.append(f"job {job}'s channel did not close")
        wall = time.perf_counter() - wall0
        cpu = _process_cpu() - cpu0
        thread_cpu = _thread_cpu(server._thread) - thread_cpu0
        received = {job: server.records_received(job) for job in tokens}
    finally:
        server.stop()
        handler.close()
        logging.getLogger().removeHandler(handler)
    lines = 0
    with open(log_file, encoding="utf-8") as stream:
        for line in stream:
            if " node.node" in line:
                lines += 1
    log_file.unlink()
    total = nodes * records
    return {"wall": wall, "cpu": cpu, "thread_cpu": thread_cpu, "received": sum(received.values()),
            "lines": lines, "total": total, "node_walls": node_walls, "failures": failures,
            "profiler": profiler}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--records", type=int, help="records per node (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 nodes x 5,000 records, 1 round")
    parser.add_argument("--profile", action="store_true", help="cProfile the server thread")
    options = parser.parse_args(argv)
    records = options.records or (5000 if options.quick else 100_000)
    nodes = 2 if options.quick and options.nodes == 8 else options.nodes
    rounds = 1 if options.quick else options.rounds
    print_header(f"bench_logrecv: {nodes} nodes x {records:,} records, {rounds} rounds")
    if options.quick:
        print(QUICK_NOTE)
    before = load_text()
    status = 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_logrecv-") as tmp:
        for round_no in range(rounds):
            result = run_once(Path(tmp), nodes, records, profile=False)
            rows.append(result)
            total = result["total"]
            lost = total - result["received"]
            walls = result["node_walls"]
            print(f"round {round_no + 1}: wall {result['wall']:.3f} s, "
                  f"{total / result['wall']:,.0f} records/s; master CPU {result['cpu']:.3f} s = "
                  f"{result['cpu'] / total * 1e6:.2f} us/record (server thread "
                  f"{result['thread_cpu'] / total * 1e6:.2f} us/record); received "
                  f"{result['received']:,}/{total:,}, log-file lines {result['lines']:,}; node "
                  f"walls {min(walls, default=0):.2f}-{max(walls, default=0):.2f} s")
            for failure in result["failures"]:
                print(f"  FAILED: {failure}")
                status = 2
            if lost or result["lines"] != total:
                print(f"  LOST: {lost} not received, {total - result['lines']} not in the file")
                status = 2
        best = min(rows, key=lambda row: row["cpu"])
        per_record = best["cpu"] / best["total"] * 1e6
        print(f"best master CPU: {per_record:.2f} us/record (median "
              f"{statistics.median(r['cpu'] / r['total'] * 1e6 for r in rows):.2f}); "
              f"best records/s {max(r['total'] / r['wall'] for r in rows):,.0f}; target <= "
              f"{TARGET_US:g} us/record: {verdict(per_record <= TARGET_US)}")
        if options.profile:
            import pstats

            result = run_once(Path(tmp), nodes, records, profile=True)
            print(f"--- cProfile, log server thread, {result['total']:,} records: top 25 by "
                  "tottime ---")
            pstats.Stats(result["profiler"], stream=sys.stdout).sort_stats(
                "tottime").print_stats(25)
            pstats.Stats(result["profiler"], stream=sys.stdout).sort_stats(
                "cumulative").print_stats(25)
    print_load(before)
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""bench_hosts: what each host costs the control node, 4 to 64 sshd hosts (issue 17).

Over lofarexec's ssh test bed (``--daemons`` OpenSSH daemons, 16 by default, on 127.0.0.2...;
host names ``h1..hN`` are aliases dealt round-robin over them in a client config of their own,
so N may exceed the daemons), for N in ``--hosts`` (4, 16, 32, 64) and J in ``--per-host``
(1 and 20 ``/bin/true`` jobs per host), one run each of:

* lofarexec, ssh backend and paramiko backend (``JobRunner.schedule``, ``max_per_node = 4``,
  each run opening its backend afresh: connections, agents and teardown inside the timing);
* GNU parallel ``-M`` (``--will-cite -M -S 4/h1,... --ssh 'ssh -F <aliases>'``), if installed;
* parallel-ssh (``pssh.clients.ParallelSSHClient``, libssh2; J ``run_command`` calls, then
  joined), if importable (``pip install parallel-ssh``). It checks no host keys.

Each run is a worker process of its own (``--worker``); this script samples it every few ms
from outside: its threads and open fds above its idle baseline, plus the threads, fds and
count of every local process whose command line names the aliases' config (ssh clients and
ControlMasters, GNU parallel itself). Columns: wall s, wall ms per host, peak threads (all;
``ctl thr``: the control process's own, above its idle baseline), fds per
host (control process; all local processes), local processes per host, teardown s (lofarexec:
``Backend.close()``; parallel-ssh: ``disconnect()``). Slope: (wall at the largest N - wall at
the smallest) / (difference in hosts), per contender and J; ratios against parallel-ssh are
from the same run.

Usage::

    python bench/bench_hosts.py [--hosts 4,16,32,64] [--per-host 1,20] [--daemons 16]

Needs root (the bed runs sshd). Exit 0 after a complete run, 2 if a run failed. Every process
it started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

TRUE = "/bin/true"
SLOTS = 4
SAMPLE_EVERY = 0.005  # seconds between samples of a worker
RUN_TIMEOUT = 600.0
SSH, PARAMIKO, PARALLEL_M, PSSH = "lofarexec ssh", "lofarexec paramiko", "parallel -M", "pssh"


# ----------------------------------------------------------------------------- the workers


def alias_config(bed_config: Path, daemons: int, count: int, path: Path) -> Path:
    """An ssh client config naming ``h1..h<count>``, each a copy of bed host node((i-1) % d + 1)."""
    blocks = {}
    for block in bed_config.read_text().split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("Host "):
            blocks[lines[0].split()[1]] = lines[1:]
    text = []
    for index in range(1, count + 1):
        text += [f"Host h{index}", *blocks[f"node{(index - 1) % daemons + 1}"], ""]
    path.write_text("\n".join(text))
    return path


def run_lofarexec(method: str, folder: Path, aliases: Path, hosts: int, per_host: int) -> dict:
    """One batch through ``JobRunner.schedule``; the backend's ``close()`` timed."""
    from lofarexec.job import ComputeJob
    from lofarexec.run.runner import JobRunner

    backend_class = _backend_class(method)
    teardown: list[float] = []
    close = backend_class.close

    def timed_close(self) -> None:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        close(self)
        teardown.append(time.perf_counter() - start)

    backend_class.close = timed_close
    path = common.write_pipeline_cfg(
        folder / f"pipeline-{method}.cfg", folder, method, SLOTS, "bench_hosts",
        f"[{method}]\nconfig_file = {aliases}\n[logging]\nbind_address = 127.0.0.1\n")
    config = common.load_pipeline_config(path, "bench_hosts")
    batch = [ComputeJob(host=f"h{i % hosts + 1}", command=TRUE) for i in range(hosts * per_host)]
    _ready()
    start = time.perf_counter()
    done = JobRunner(config, recipe_name="bench_hosts", error=threading.Event()).schedule(batch)
    wall = time.perf_counter() - start
    states = common.count_states(done)
    failed = sorted({str(job.results.get("reason"))[:200] for job in done.values()
                     if job.results.get("state") != "succeeded"})
    return {"wall": wall, "teardown": sum(teardown), "ok": states == {"succeeded": len(batch)},
            "why": f"{states} {failed[:2]}"}


def _backend_class(method: str) -> type:
    if method == "ssh":
        from lofarexec_ssh import SshBackend
        return SshBackend
    from lofarexec_paramiko import ParamikoBackend
    return ParamikoBackend


def run_parallel(aliases: Path, hosts: int, per_host: int) -> dict:
    logins = ",".join(f"{SLOTS}/h{index}" for index in range(1, hosts + 1))
    argv = ["parallel", "--will-cite", "-M", "-S", logins, "--ssh", f"ssh -F {aliases}", TRUE]
    _ready()
    wall, _, _ = common.run_fed(argv, hosts * per_host, RUN_TIMEOUT)
    return {"wall": wall, "teardown": None, "ok": True, "why": ""}


def run_pssh(bed_directory: Path, aliases: Path, hosts: int, per_host: int) -> dict:
    """parallel-ssh: the same hosts by address and port (it reads no ssh config)."""
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    from lofarexec.testing.sshbed import SshTestBed

    bed = SshTestBed.load(bed_directory)
    daemons = len(bed.host_names)
    addresses, configs = [], []
    for index in range(hosts):
        node = f"node{index % daemons + 1}"
        addresses.append(bed.address(node))
        configs.append(HostConfig(port=bed.port(node), user=bed.user,
                                  private_key=str(bed.identity_file)))
    _ready()
    start = time.perf_counter()
    client = ParallelSSHClient(addresses, host_config=configs, num_retries=1)
    outputs = [client.run_command(TRUE) for _ in range(per_host)]
    codes = []
    for output in outputs:
        client.join(output)
        codes += [host_output.exit_code for host_output in output]
    finished = time.perf_counter()
    disconnect = getattr(client, "disconnect", None)
    if disconnect is not None:
        disconnect()
    del client
    end = time.perf_counter()
    return {"wall": end - start, "teardown": end - finished,
            "ok": codes == [0] * (hosts * per_host), "why": f"exit codes {set(codes)}"}


def _ready() -> None:
    """Tell the sampler the worker is idle (its baseline), and wait for its go."""
    print("ready", flush=True)
    sys.stdin.readline()


def worker(options: argparse.Namespace) -> int:
    folder, aliases = Path(options.folder), Path(options.aliases)
    if options.worker == PSSH:
        result = run_pssh(Path(options.bed), aliases, options.count, options.jobs)
    elif options.worker == PARALLEL_M:
        result = run_parallel(aliases, options.count, options.jobs)
    else:
        method = "ssh" if options.worker == SSH else "paramiko"
        result = run_lofarexec(method, folder, aliases, options.count, options.jobs)
    print(json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------- sampling


def _threads_fds(pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            threads = next(int(line.split()[1]) for line in status if line.startswith("Threads"))
        return threads, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0


def _marked(marker: bytes, skip: int) -> list[int]:
    """Pids of local processes whose command line holds ``marker`` (not ``skip``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != skip:
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if marker in cmdline.read():
                    found.append(int(entry))
    return found


class Sampler(threading.Thread):
    """Peaks of a worker's threads and fds (above its idle baseline) and of the marked
    processes' count, threads and fds, sampled until stopped."""

    def __init__(self, pid: int, marker: bytes) -> None:
        super().__init__(daemon=True)
        self.pid, self.marker = pid, marker
        self.base_threads, self.base_fds = _threads_fds(pid)
        self.peak = {"threads": 0, "own_threads": 0, "fds": 0, "all_fds": 0, "processes": 0}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY):
            threads, fds = _threads_fds(self.pid)
            threads, fds = threads - self.base_threads, fds - self.base_fds
            others = [_threads_fds(pid) for pid in _marked(self.marker, self.pid)]
            sample = {"threads": threads + sum(t for t, _ in others), "own_threads": threads,
                      "fds": fds,
                      "all_fds": fds + sum(f for _, f in others), "processes": len(others)}
            for key, value in sample.items():
                self.peak[key] = max(self.peak[key], value)


def measure(tool: str, hosts: int, per_host: int, folder: Path, aliases: Path,
            bed_directory: Path) -> dict:
    """One run of ``tool`` in a worker process, sampled from here."""
    argv = [sys.executable, os.path.abspath(__file__), "--worker", tool, "--count", str(hosts),
            "--jobs", str(per_host), "--folder", str(folder), "--aliases", str(aliases),
            "--bed", str(bed_directory)]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise common.BenchError(f"{tool}: the worker did not start")
        sampler = Sampler(process.pid, str(aliases).encode())
        sampler.start()
        process.stdin.write("go\n")
        process.stdin.flush()
        line = process.stdout.readline()
        sampler.stopped.set()
        sampler.join()
        process.wait(RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if not line:
        raise common.BenchError(f"{tool}, {hosts} hosts x {per_host}: the worker failed")
    result = json.loads(line)
    if not result["ok"]:
        raise common.BenchError(f"{tool}, {hosts} hosts x {per_host}: {result['why']}")
    return {**result, **sampler.peak}


# ----------------------------------------------------------------------------- main


def tools() -> list[str]:
    found = [SSH, PARAMIKO]
    if shutil.which("parallel"):
        found.append(PARALLEL_M)
    else:
        print("GNU parallel: not installed (apt-get install -y parallel); skipped")
    try:
        import pssh  # noqa: F401
        found.append(PSSH)
    except ImportError:
        print("parallel-ssh: not importable (pip install parallel-ssh); skipped")
    return found


def row(tool: str, hosts: int, per_host: int, result: dict) -> str:
    teardown = "-" if result["teardown"] is None else f"{result['teardown']:.3f}"
    return (f"| {tool:18} | {hosts:3} | {per_host:2} | {result['wall']:6.3f} | "
            f"{result['wall'] / hosts * 1000:6.1f} | {result['threads']:4} | "
            f"{result['own_threads']:4} | "
            f"{result['fds'] / hosts:5.2f} | {result['all_fds'] / hosts:5.2f} | "
            f"{result['processes'] / hosts:5.2f} | {teardown:>7} |")


def bench(options: argparse.Namespace, folder: Path) -> int:
    from lofarexec.testing.sshbed import SshTestBed

    bed = SshTestBed(folder / "bed", hosts=options.daemons)
    bed.start()
    try:
        counts = [int(word) for word in options.hosts.split(",")]
        per_hosts = [int(word) for word in options.per_host.split(",")]
        aliases = alias_config(bed.ssh_config, options.daemons, max(counts), folder / "aliases")
        names = tools()
        if options.tools:
            names = [name for name in names if name in options.tools.split(",")]
        common.print_header(f"bench_hosts: /bin/true, {counts} hosts (aliases over "
                            f"{options.daemons} sshd), {per_hosts} jobs per host, {SLOTS} slots")
        print("| tool               |   N |  J | wall s | ms/host | thr | ctl thr | fds/h | "
              "all fds/h | proc/h | teardown s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        results = {}
        for per_host in per_hosts:
            for hosts in counts:
                for tool in names:
                    result = measure(tool, hosts, per_host, folder, aliases, bed.directory)
                    results[tool, hosts, per_host] = result
                    print(row(tool, hosts, per_host, result), flush=True)
        print()
        low, high = min(counts), max(counts)
        for per_host in per_hosts:
            for tool in names:
                slope = (results[tool, high, per_host]["wall"]
                         - results[tool, low, per_host]["wall"]) / (high - low) * 1000
                versus = ""
                if PSSH in names and tool != PSSH:
                    ratio = (results[tool, high, per_host]["wall"]
                             / results[PSSH, high, per_host]["wall"])
                    versus = f"; wall at {high} hosts {ratio:.2f}x parallel-ssh's"
                print(f"J={per_host:2} {tool:18}: +{slope:5.1f} ms per host{versus}")
    finally:
        for pid in _marked(str(folder).encode(), os.getpid()):  # leftover ssh clients, if any
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        bed.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="4,16,32,64")
    parser.add_argument("--per-host", default="1,20")
    parser.add_argument("--daemons", type=int, default=16)
    parser.add_argument("--tools", help="comma-separated subset of: " + ", ".join(
        (SSH, PARAMIKO, PARALLEL_M, PSSH)))
    for hidden in ("--worker", "--count", "--jobs", "--folder", "--aliases", "--bed"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        options.count, options.jobs = int(options.count), int(options.jobs)
        return worker(options)
    if os.geteuid() != 0:
        print("bench_hosts: must run as root (the test bed starts sshd)", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="bench_hosts-"))
    try:
        return bench(options, folder)
    except common.BenchError as exc:
        print(f"bench_hosts: run failed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""bench_silent_hosts: do silent hosts hold up the working ones? (paramiko backend, issue 17)

``--hosts`` working hosts (aliases ``h1..hN`` over lofarexec's ssh test bed of ``--daemons``
sshd) and ``--silent`` hosts that accept TCP and then say nothing (half of them not even an SSH
banner, half a banner and then nothing), ``--per-host`` ``/bin/true`` jobs on each, one batch
through ``JobRunner.schedule`` with ``[paramiko] connect_timeout = --timeout``; the silent
hosts' jobs are given first. Prints when the working hosts' last job ended and when the
batch ended (seconds from its start), and the final states. Before issue 17's fix the working
hosts waited behind the silent ones for the backend's 16 set-up threads: about one connect
timeout per 16 silent hosts.

Usage::

    python bench/bench_silent_hosts.py [--hosts 64] [--silent 20] [--per-host 1] [--timeout 5]

Needs root (the bed runs sshd). Exit 0 when every working job succeeded and every silent one
ended as a transport error, else 2. Compare trees with ``PYTHONPATH=<tree>/backends``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from bench_hosts import alias_config  # noqa: E402

from lofarexec.testing.silenthosts import SilentHosts  # noqa: E402
from lofarexec.testing.sshbed import running_testbed  # noqa: E402


def run(args: argparse.Namespace, bed, folder: Path, silent: SilentHosts) -> bool:
    from lofarexec.job import ComputeJob
    from lofarexec.run.runner import JobRunner

    aliases = alias_config(bed.ssh_config, args.daemons, args.hosts, folder / "aliases")
    aliases.write_text(aliases.read_text() + "\n" + silent.ssh_config(args.silent))
    path = common.write_pipeline_cfg(
        folder / "pipeline.cfg", folder, "paramiko", 4, "bench_silent_hosts",
        f"[paramiko]\nconfig_file = {aliases}\nconnect_timeout = {args.timeout}\n"
        "[logging]\nbind_address = 127.0.0.1\n")
    config = common.load_pipeline_config(path, "bench_silent_hosts")
    hosts = [f"s{n}" for n in range(1, args.silent + 1)] + [
        f"h{n}" for n in range(1, args.hosts + 1)]
    batch = [ComputeJob(host=host, command="/bin/true") for host in hosts
             for _ in range(args.per_host)]
    began = time.time()
    done = JobRunner(config, recipe_name="bench_silent_hosts",
                     error=threading.Event()).schedule(batch)
    wall = time.time() - began
    working = [job for job in done.values() if job.host.startswith("h")]
    silent_jobs = [job for job in done.values() if job.host.startswith("s")]
    last_working = max(job.results["end_time"] for job in working) - began
    first_silent = min(job.results["end_time"] for job in silent_jobs) - began
    print(f"working hosts' last job ended {last_working:.3f} s; first silent host's job "
          f"{first_silent:.3f} s; batch {wall:.3f} s")
    print("states: working", dict(Counter(job.results["state"] for job in working)),
          "silent", dict(Counter(job.results["state"] for job in silent_jobs)))
    return (all(job.results["state"] == "succeeded" for job in working)
            and all(job.results["state"] == "transport_error" for job in silent_jobs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--silent", type=int, default=20)
    parser.add_argument("--per-host", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--daemons", type=int, default=16)
    args = parser.parse_args()
    import lofarexec_paramiko
    print(f"{args.hosts} working hosts, {args.silent} silent, {args.per_host} job(s) each, "
          f"connect_timeout {args.timeout:g} s; backend {lofarexec_paramiko.__file__}")
    print(f"load: {common.load_text()}")
    with tempfile.TemporaryDirectory(prefix="bench_silent_") as folder, \
            running_testbed(Path(folder) / "bed", hosts=args.daemons) as bed:
        silent = SilentHosts(backlog=args.silent)
        try:
            ok = run(args, bed, Path(folder), silent)
        finally:
            silent.close()
    print(f"load: {common.load_text()}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())

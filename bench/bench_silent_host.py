#!/usr/bin/env python3
"""bench_silent_host: what a host that accepts TCP and never answers costs a batch (issue 14).

A listener on 127.0.0.1 takes every connection and never speaks (no ssh banner: a frozen host,
a hung sshd). ``--jobs`` ``/bin/true`` jobs on it, ``max_per_node = 4``, ``connect_timeout``
``--timeout`` s, ``host_failures`` at its default (3), through ``JobRunner.schedule`` with the
ssh and the paramiko backend, once with the connect-timeout quarantine (``after``) and once
with it switched off in the process (``before``: a connect timeout counts as any transport
failure, as before issue 14's change). Columns: connections the listener accepted, batch wall
seconds, attempts made, final states.

Usage::

    python bench/bench_silent_host.py [--jobs 20] [--timeout 2]

Exit 0 after a complete run, 2 if a job did not end as a transport error.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lofarexec.run.hosthealth as hosthealth  # noqa: E402
from lofarexec.config import load_config  # noqa: E402
from lofarexec.job import ComputeJob  # noqa: E402
from lofarexec.run.runner import JobRunner  # noqa: E402

ORIGINAL = hosthealth.connect_timed_out


def one_run(method: str, mode: str, jobs_count: int, timeout: float, folder: Path) -> bool:
    hosthealth.connect_timed_out = ORIGINAL if mode == "after" else lambda error: False
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []

    def take() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    folder.mkdir()
    (folder / "pipeline.cfg").write_text(
        f"[DEFAULT]\nruntime_directory = {folder}/runtime\n"
        f"[layout]\njob_directory = %(runtime_directory)s/jobs/%(job_name)s\n"
        f"[remote]\nmethod = {method}\n[{method}]\nconnect_timeout = {timeout:g}\n"
        f"port = {listener.getsockname()[1]}\n"
        "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
    config = load_config(folder / "pipeline.cfg", job_name="silent", start_time="now")
    jobs = [ComputeJob("127.0.0.1", "/bin/true") for _ in range(jobs_count)]
    started = time.monotonic()
    JobRunner(config, recipe_name="silent", error=threading.Event(),
              progress=False).schedule(jobs, max_per_node=4)
    wall = time.monotonic() - started
    listener.close()
    for connection in accepted:
        connection.close()
    states = sorted({job.results["state"] for job in jobs})
    print(f"{method:9} {mode:7} {len(accepted):11} {wall:7.1f} "
          f"{sum(job.results['attempts'] for job in jobs):8}  {','.join(states)}", flush=True)
    return states == ["transport_error"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=2.0)
    options = parser.parse_args()
    print(f"{'backend':9} {'rule':7} {'connections':>11} {'wall s':>7} {'attempts':>8}  states")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-silent-") as directory:
        for method in ("ssh", "paramiko"):
            for mode in ("before", "after"):
                ok &= one_run(method, mode, options.jobs, options.timeout,
                              Path(directory) / f"{method}-{mode}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())

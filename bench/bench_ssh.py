#!/usr/bin/env python3
"""bench_ssh: many tiny jobs over 4 real sshd hosts, lofarexec's remote backends against GNU
parallel.

400 ``/bin/true`` jobs over the 4 hosts of lofarexec's ssh test bed (node1..node4: one OpenSSH
``sshd`` each on 127.0.0.2..127.0.0.5, started and stopped by this script in a temporary folder),
4 slots per host, run in the same process by:

* lofarexec, ssh backend: ``JobRunner.schedule`` with a ``PipelineConfig`` read from a temporary
  pipeline.cfg (``[remote] method = ssh``, ``max_per_node = 4``, ``[ssh] config_file = <the bed's
  ssh_config>``, ``[logging] bind_address = 127.0.0.1``); jobs ``ComputeJob(host="nodeN",
  command="/bin/true")`` dealt round-robin over the hosts. Each run opens the backend afresh, so
  its connections and host agents are set up inside the timing, as in a real recipe step. With
  the default ``launch = agent`` one ssh process per host runs lofarexec's host agent
  (``python3 -I -S -c ...``), which starts each job with ``posix_spawn``. Also run, for information,
  with ``launch = process``: an ssh process per job on a ControlMaster, and on the host the
  remote shell, then lofarexec's launch wrapper (a small inline Python program that watches the
  link and reports the exact exit status), then ``/bin/true``;
* lofarexec, paramiko backend (``[remote] method = paramiko``, ``[paramiko] config_file = ...``),
  only if ``lofarexec backends`` lists ``paramiko``; otherwise "paramiko: not installed". Its
  default ``launch = agent`` starts one host agent per connection (inside the timing, as each
  run opens the backend afresh) and a ``posix_spawn`` per job; also run, for information, with
  ``launch = channel`` (a session, the remote shell and the launch wrapper per job, as ssh);
* lofarexec, local backend: the same jobs (host names node1..node4, 4 slots each) started on
  this machine, the yardstick for what the remote transports add per job (issue 17: ssh and
  paramiko per job within 1.5x the local backend's, same run);
* GNU parallel ``--will-cite -S 4/node1,4/node2,4/node3,4/node4 --ssh 'ssh -F <ssh_config>'
  /bin/true`` with the arguments 1..N on stdin, with ``--controlmaster`` (``-M``) and without
  (a fresh ssh connection per job);
* a FLOOR, not a tool: a bare loop of ``ssh -F <ssh_config> -o ControlMaster=auto
  -o ControlPath=... -o ControlPersist=60 nodeN /bin/true`` in 16 threads (4 per host), run
  after one master per host has been warmed (untimed). It is the least a per-job OpenSSH
  client can cost here: no scheduling, no exit-status protocol, no kill guarantee.

The remote shell's start-up cost weighs on every transport alike. The bed gives sessions a clean
``HOME``, so root's ``~/.bashrc`` (pyenv init, about 75 ms per session) does not run.

Each tool runs ``--rounds`` times (default 3), interleaved (one run of each tool per round, the
order rotated every round); the best wall time of each is compared.

Usage::

    python bench/bench_ssh.py [--quick] [--jobs N] [--rounds R] [--profile]

Needs root (the bed runs sshd), openssh-server, openssh-client and GNU parallel. Exit status: 0
after a complete run (targets met or not: the table says which), 1 if a tool it needs is missing
or it is not run as root, 2 if a run went wrong (a job, a tool or the test bed failed), 130 when
interrupted. Every process it started (sshd hosts, their sessions, ssh clients and masters) is
stopped before it exits, on failure and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

if __package__:
    from . import _common as common
    from . import _ssh_tools as tools
else:  # run as a script: its folder is on sys.path
    import _common as common
    import _ssh_tools as tools

BenchError = common.BenchError
Floor, cpu_seconds, machine_ticks = tools.Floor, tools.cpu_seconds, tools.machine_ticks
remote_facts, sweep, versions = tools.remote_facts, tools.sweep, tools.versions
HOSTS, SLOTS, TRUE, RUN_TIMEOUT = tools.HOSTS, tools.SLOTS, tools.TRUE, tools.RUN_TIMEOUT
host_of, Result = tools.host_of, tools.Result

DEFAULT_JOBS = 400
DEFAULT_ROUNDS = 3
QUICK_JOBS = 40
QUICK_ROUNDS = 1
TARGET_SSH_VS_PARALLEL_M = 2.0  # lofarexec ssh at least this many times faster than parallel -M
TARGET_PARAMIKO_VS_PARALLEL_M = 5.0  # paramiko at least this many times faster than parallel -M
TARGET_REMOTE_VS_LOCAL = 1.5  # ssh and paramiko per job at most this many times local's (issue 17)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/stat's unit

SSH = "lofarexec, ssh backend"
PARAMIKO = "lofarexec, paramiko backend"
PARAMIKO_CHANNEL = "lofarexec, paramiko, launch=channel (info)"
SSH_PROCESS = "lofarexec, ssh, launch=process (info)"
LOCAL = "lofarexec, local backend (same jobs)"
PARALLEL_M = "GNU parallel -M (--controlmaster)"
PARALLEL = "GNU parallel, no -M"
FLOOR = "FLOOR: ssh ControlMaster loop x 16 thr"


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so that every process gets stopped."""


# ----------------------------------------------------------------------------- prerequisites


def missing_tools() -> list[str]:
    """One line per missing prerequisite, each saying how to install it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (the test bed starts sshd daemons): "
                        "sudo python bench/bench_ssh.py")
    problems += common.true_problems(TRUE)
    if not os.access("/usr/sbin/sshd", os.X_OK):
        problems.append("sshd is missing: apt-get install -y openssh-server")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        problems.append("the OpenSSH client is missing: apt-get install -y openssh-client")
    problems += common.parallel_problems()
    try:
        import lofarexec.run.runner  # noqa: F401
        import lofarexec.testing.sshbed  # noqa: F401
    except ImportError as exc:
        problems.append(f"lofarexec cannot be imported ({exc}): pip install -e <repo root>")
    return problems


def installed_backends() -> list[str]:
    """The names ``lofarexec backends`` lists (the first word of each line)."""
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "backends"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if result.returncode != 0:
        raise BenchError(f"`lofarexec backends` exited {result.returncode}: "
                         f"{result.stderr.strip()[-500:]}")
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- the contenders


def write_config(folder: Path, method: str, ssh_config: Path, extra: str = "",
                 name: str = "") -> Path:
    return common.write_pipeline_cfg(
        folder / f"pipeline-{name or method}.cfg", folder, method, SLOTS, "bench_ssh",
        f"[{method}]\n"
        f"config_file = {ssh_config}\n{extra}"
        "[logging]\n"
        "bind_address = 127.0.0.1\n")


def load(config_path: Path):  # -> PipelineConfig
    return common.load_pipeline_config(config_path, "bench_ssh")


def run_lofarexec(config, jobs: int, label: str) -> Result:
    """One batch through JobRunner.schedule."""
    from lofarexec.errors import PipelineQuit
    from lofarexec.job import ComputeJob
    from lofarexec.run.runner import JobRunner

    own, children = cpu_seconds()
    start = time.perf_counter()
    batch = [ComputeJob(host=host_of(i), command=TRUE) for i in range(jobs)]
    runner = JobRunner(config, recipe_name="bench_ssh", error=threading.Event())
    _ACTIVE_RUNNER.append(runner)
    try:
        done = runner.schedule(batch)
    except PipelineQuit as exc:
        if _INTERRUPTED:
            raise Interrupted(_INTERRUPTED[0]) from exc
        raise BenchError(f"{label}: the run was stopped: {exc}") from exc
    finally:
        _ACTIVE_RUNNER.clear()
    wall = time.perf_counter() - start
    own_after, children_after = cpu_seconds()
    states = common.count_states(done)
    if len(done) != jobs or states != {"succeeded": jobs} or runner.error.is_set():
        reasons = {str(job.results.get("reason"))[:200] for job in done.values()
                   if job.results.get("state") != "succeeded"}
        raise BenchError(f"{label}: expected {jobs} succeeded jobs, got {states}; "
                         f"reasons: {sorted(reasons)[:3]}")
    return wall, own_after - own, children_after - children


def run_tool(argv: list[str], jobs: int) -> Result:
    """``argv`` fed the arguments 1..jobs on stdin, one a line."""
    wall, (own, children), (own_after, children_after) = common.run_fed(
        argv, jobs, RUN_TIMEOUT, cpu_seconds)
    return wall, own_after - own, children_after - children


# ----------------------------------------------------------------------------- reporting


_ACTIVE_RUNNER: list = []  # the JobRunner whose schedule() is running, if any
_INTERRUPTED: list[int] = []  # the signals received


def _on_signal(signum: int, _frame: object) -> None:
    """As a recipe does: a running batch is killed through ``JobRunner.kill`` (its jobs are
    stopped and reported, then ``schedule`` raises PipelineQuit); otherwise unwind at once.
    (An exception raised inside ``schedule`` instead would leave it waiting up to 5 s for each
    started job's log connection in its ``finally``.)"""
    _INTERRUPTED.append(signum)
    if len(_INTERRUPTED) == 1 and _ACTIVE_RUNNER and _ACTIVE_RUNNER[0].kill(
            f"bench_ssh: {signal.Signals(signum).name}"):
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    options, jobs, rounds = common.parse_jobs_rounds(
        __doc__.split("\n\n")[0], argv, quick_jobs=QUICK_JOBS, quick_rounds=QUICK_ROUNDS,
        default_jobs=DEFAULT_JOBS, default_rounds=DEFAULT_ROUNDS,
        profile_help="also print cProfile's top functions of one lofarexec ssh run, for "
                     "the scheduler thread and for every thread it starts, merged (wall "
                     "time), and of one paramiko run if installed (all threads, CPU time)")

    if common.report_problems("bench_ssh", missing_tools()):
        return 1

    handled = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # e.g. started with nohup ... &
        handled.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, _on_signal) for signum in handled}
    folder = Path(tempfile.mkdtemp(prefix="bench_ssh-"))
    try:
        return _bench(folder, jobs, rounds, options)
    except BenchError as exc:
        print(f"bench_ssh: run failed: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        print("bench_ssh: interrupted; stopping everything", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - e.g. lofarexec's own errors: a run that went wrong
        traceback.print_exc()
        print("bench_ssh: run failed (see the traceback above)", file=sys.stderr)
        return 2
    finally:
        for signum in previous:  # stopping everything must not be cut short by another signal
            signal.signal(signum, signal.SIG_IGN)
        _cleanup(folder)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_CLEANUPS: list = []  # callables run (last first) before the folder is swept and removed


def _cleanup(folder: Path) -> None:
    while _CLEANUPS:
        action = _CLEANUPS.pop()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            print(f"bench_ssh: while stopping: {exc}", file=sys.stderr)
    left = sweep(folder)
    if left:
        print(f"bench_ssh: killed {len(left)} leftover process(es) of this run, e.g. {left[0]}",
              file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)


def _bench(folder: Path, jobs: int, rounds: int, options: argparse.Namespace) -> int:
    from lofarexec.testing.sshbed import SshBedError, SshTestBed

    parallel = shutil.which("parallel")
    assert parallel is not None
    bed = SshTestBed(folder / "bed", hosts=HOSTS)
    _CLEANUPS.append(bed.stop)
    try:
        bed.start()
    except SshBedError as exc:
        raise BenchError(f"the ssh test bed did not start: {exc}") from exc
    ssh_config = bed.ssh_config
    floor = Floor(ssh_config, folder)
    _CLEANUPS.append(floor.stop)

    backends = installed_backends()
    ssh_run = load(write_config(folder, "ssh", ssh_config))
    contenders = {SSH: lambda n: run_lofarexec(ssh_run, n, SSH)}
    process_run = load(write_config(folder, "ssh", ssh_config, "launch = process\n",
                                    name="ssh-process"))
    contenders[SSH_PROCESS] = lambda n: run_lofarexec(process_run, n, SSH_PROCESS)
    if "paramiko" in backends:
        paramiko_run = load(write_config(folder, "paramiko", ssh_config))
        contenders[PARAMIKO] = lambda n: run_lofarexec(paramiko_run, n, PARAMIKO)
        channel_run = load(write_config(folder, "paramiko", ssh_config, "launch = channel\n",
                                        name="paramiko-channel"))
        contenders[PARAMIKO_CHANNEL] = lambda n: run_lofarexec(channel_run, n, PARAMIKO_CHANNEL)
    local_run = load(common.write_pipeline_cfg(folder / "pipeline-local.cfg", folder, "local",
                                               SLOTS, "bench_ssh"))
    contenders[LOCAL] = lambda n: run_lofarexec(local_run, n, LOCAL)
    logins = ",".join(f"{SLOTS}/{host_of(i)}" for i in range(HOSTS))
    parallel_argv = [parallel, "--will-cite", "-S", logins, "--ssh", f"ssh -F {ssh_config}"]
    contenders[PARALLEL_M] = lambda n: run_tool([*parallel_argv, "--controlmaster", TRUE], n)
    contenders[PARALLEL] = lambda n: run_tool([*parallel_argv, TRUE], n)
    contenders[FLOOR] = floor.run
    names = list(contenders)

    common.print_header(f"bench_ssh: {jobs} x {TRUE} over {HOSTS} sshd hosts (lofarexec test "
                        f"bed, loopback), {SLOTS} slots each; best of {rounds} (interleaved)",
                        tools=versions())
    print(remote_facts(bed))
    if PARAMIKO not in contenders:
        print("paramiko: not installed (`lofarexec backends` lists: "
              f"{', '.join(backends) or 'nothing'}); skipped")
    print(flush=True)
    load_before = common.load_text()
    for name in names:  # warm-up: page cache, imports, perl modules, host keys; not timed
        contenders[name](min(jobs, 20))
    walls: dict[str, list[float]] = {name: [] for name in names}
    own_cpu: dict[str, list[float]] = {name: [] for name in names}
    child_cpu: dict[str, list[float]] = {name: [] for name in names}
    machine_busy: dict[str, list[float]] = {name: [] for name in names}
    machine_cpu: dict[str, list[float]] = {name: [] for name in names}
    for name in common.interleaved(names, rounds):
        busy, total = machine_ticks()
        wall, own, children = contenders[name](jobs)
        busy_after, total_after = machine_ticks()
        if total_after > total:
            machine_busy[name].append((busy_after - busy) / (total_after - total))
            machine_cpu[name].append((busy_after - busy) / CLOCK_TICKS / jobs * 1000)
        walls[name].append(wall)
        own_cpu[name].append(own)
        child_cpu[name].append(children)
    load_after = common.load_text()

    best = {name: min(values) for name, values in walls.items()}
    width = max(len(name) for name in names)
    print(f"{common.wall_head(width)}  "
          f"{'CPU ms/job':>10}  {'child CPU':>9}  {'busy %':>6}  {'all CPU':>7}  runs (s)")
    for name in names:
        own = min(own_cpu[name]) / jobs * 1000
        own_text = f"{own:.3f}" if name in (SSH, SSH_PROCESS, PARAMIKO, PARAMIKO_CHANNEL,
                                            LOCAL, FLOOR) else "-"
        children = min(child_cpu[name]) / jobs * 1000
        busy = (f"{statistics.median(machine_busy[name]) * 100:.0f}"
                if machine_busy[name] else "?")
        all_cpu = f"{min(machine_cpu[name]):.1f}" if machine_cpu[name] else "?"
        print(f"{common.wall_columns(name, width, walls[name], jobs)}  {own_text:>10}  "
              f"{children:9.3f}  {busy:>6}  {all_cpu:>7}  {common.runs_text(walls[name])}")
    print("(ms/job: best wall / jobs. CPU ms/job: least CPU time of the benchmarking process "
          "itself, all its threads. child CPU: least CPU ms/job of the local child processes it "
          "waited for (ssh clients, parallel and its children; not sshd, not daemonized masters). "
          "busy %: median share of all CPUs busy during its runs, whoever used them (100: the "
          "machine was saturated). all CPU: least CPU ms/job of the whole machine during its runs "
          "(both sides of every job, as the hosts share this machine's CPUs; other users' load "
          "included))")
    print("FLOOR is a reference, not a tool: bare ssh clients on warm masters, nothing else.")
    print("lofarexec's default (launch = agent, ssh and paramiko alike) starts one host agent "
          "per host and run, inside the timing, and then a posix_spawn per job. The other "
          "contenders pay the remote shell's start-up per job (the bed's clean HOME spares it "
          "root's pyenv init, ~75 ms); ssh's launch=process and paramiko's launch=channel also "
          "run the Python launch wrapper on the host per job. Those costs are in the figures.")
    common.print_load(load_before, load_after)
    print()
    verdict = common.verdict

    vs_m = best[PARALLEL_M] / best[SSH]
    print(f"lofarexec ssh vs GNU parallel -M     : {vs_m:.2f}x faster   "
          f"(target >= {TARGET_SSH_VS_PARALLEL_M:g}x: {verdict(vs_m >= TARGET_SSH_VS_PARALLEL_M)})")
    if PARAMIKO in best:
        vs_m = best[PARALLEL_M] / best[PARAMIKO]
        print(f"lofarexec paramiko vs GNU parallel -M: {vs_m:.2f}x faster   "
              f"(target >= {TARGET_PARAMIKO_VS_PARALLEL_M:g}x: "
              f"{verdict(vs_m >= TARGET_PARAMIKO_VS_PARALLEL_M)})")
    else:
        print(f"lofarexec paramiko vs GNU parallel -M: not measured (paramiko: not installed; "
              f"target >= {TARGET_PARAMIKO_VS_PARALLEL_M:g}x)")
    print(f"lofarexec ssh vs GNU parallel, no -M : {best[PARALLEL] / best[SSH]:.2f}x faster (info)")
    for name in (SSH, PARAMIKO):
        if name in best:
            ratio = best[name] / best[LOCAL]
            print(f"{name} per job / local backend's per job: {ratio:.2f}x   "
                  f"(target <= {TARGET_REMOTE_VS_LOCAL:g}x: "
                  f"{verdict(ratio <= TARGET_REMOTE_VS_LOCAL)})")
    tools.print_setup({name: contenders[name] for name in (SSH, PARAMIKO, LOCAL)
                       if name in contenders}, best, jobs, rounds, LOCAL)
    for name in (SSH, SSH_PROCESS, PARAMIKO, PARAMIKO_CHANNEL):
        if name in best:
            print(f"{name} time / FLOOR time: {best[name] / best[FLOOR]:.2f}  "
                  f"(+{(best[name] - best[FLOOR]) / jobs * 1000:.3f} ms/job over the floor; info)")
    if options.quick:
        print(common.QUICK_NOTE)
    if options.profile:
        print(flush=True)
        profile(ssh_run, jobs)
        if PARAMIKO in contenders:
            print(flush=True)
            tools.profile_all_threads(lambda: run_lofarexec(paramiko_run, jobs, PARAMIKO),
                                      jobs, PARAMIKO)
    return 0


def profile(config, jobs: int, top: int = 20) -> None:
    """cProfile one lofarexec ssh run: the calling (scheduler) thread, and every
    thread started during the run, merged."""
    (wall, _, _), main_profile, launcher_profile = common.profile_with_launcher(
        lambda: run_lofarexec(config, jobs, SSH))
    print(f"(profiled run: {wall:.3f} s wall under cProfile)")
    common.print_thread_profiles(main_profile, launcher_profile, jobs, top)


if __name__ == "__main__":
    sys.exit(main())

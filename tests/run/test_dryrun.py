"""The dry run (``-n``): the plan per host, each built-in backend's argv, nothing started."""

from __future__ import annotations

import io
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.config import load_config
from lofarexec.job import ComputeJob, JobState
from lofarexec.run.dryrun import host_plans, previewed, show_dry_run, shown
from lofarexec.run.limits import Limits
from lofarexec.run.runner import JobRunner
from lofarexec.transport import remote_launch
from tests.helpers import REPO, write_config

TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
NODE = ("python3", "/opt/nodes/dppp.py", "10.0.0.1", "4567", "in file.ms", "--x=1")


def request(host: str = "node1", **changes) -> LaunchRequest:
    fields = dict(job_id=0, host=host, argv=NODE, environment={"PYTHONPATH": "/opt/lib"},
                  token=TOKEN, recipe_name="dppp")
    return LaunchRequest(**{**fields, **changes})


def backend(method: str, settings: dict | None = None):
    """A built-in backend, made the way the runner makes it (never opened here)."""
    from lofarexec.plugin.manager import build_plugin_manager

    backend_class = build_plugin_manager([]).backends.get(method)
    return backend_class(backend_class.Settings(**(settings or {})))


def children() -> set[int]:
    """This process's child processes, from /proc (every thread's list)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


# -- the plan ------------------------------------------------------------------------------------
def test_the_plan_groups_jobs_by_host_with_slots_first_and_last():
    jobs = [ComputeJob(host, "node.py") for host in ("a", "b", "a", None, "a", None)]
    plans = host_plans(jobs)
    assert [(plan.host, plan.job_ids) for plan in plans] == [
        ("a", [0, 2, 4]), ("b", [1]), (None, [3, 5])]
    out = io.StringIO()
    show_dry_run(jobs, backend("local"), Limits(2, {"b": 5}, 3), ["p1", "p2"],
                 lambda job, host, token: request(host, argv=("node.py",), token=token), out)
    text = out.getvalue()
    assert text.startswith("dry run: 6 jobs on 4 hosts with backend local; nothing is started")
    rows = [line.split() for line in text.splitlines()[1:4]]
    assert rows == [["host", "jobs", "slots", "first", "last"], ["a", "3", "2", "0", "4"],
                    ["b", "1", "5", "1", "1"]]
    assert ("2 jobs without a host (first 3, last 5): each placed when it starts on the "
            "least-loaded of 2 pool hosts (p1, p2), slots per host: 2") in text
    assert "at most 3 jobs at once in all" in text
    assert all(job.results["state"] == JobState.NOT_STARTED.value for job in jobs)


def test_previewed_jobs_are_the_first_and_the_first_with_another_command():
    jobs = [ComputeJob("h", "a"), ComputeJob("h", "a"), ComputeJob("h", "b")]
    assert previewed(jobs) == [0, 2]
    assert previewed(jobs[:2]) == [0, 1]
    assert previewed(jobs[:1]) == [0] and previewed([]) == []


def test_host_less_jobs_without_a_pool_are_the_runs_own_error():
    from lofarexec.errors import JobListError

    with pytest.raises(JobListError, match="job 0 has no host and the run has no host list"):
        show_dry_run([ComputeJob(None, "x")], backend("local"), Limits(), None,
                     lambda *_: request(), io.StringIO())


def test_a_backend_that_cannot_say_is_named():
    out = io.StringIO()
    show_dry_run([ComputeJob("h", "x")], backend("mock"), Limits(), None,
                 lambda job, host, token: request(host, token=token), out)
    assert "argv not known for backend mock" in out.getvalue()


def test_the_token_is_redacted_and_inline_programs_shortened():
    launch = remote_launch(request())
    text = shown(f"{launch.command} TOKEN={TOKEN}", TOKEN)
    assert TOKEN not in text and "TOKEN=<token>" in text
    assert "base64 characters>" in text and len(text) < 400


# -- each backend's argv -------------------------------------------------------------------------
def test_local_describes_the_argv_it_really_runs(tmp_path):
    """The local backend's preview, compared with the argv its real start gives the node."""
    script = tmp_path / "argv.py"
    script.write_text("import sys; sys.stdout.write(repr(sys.argv))\n")
    real = request(argv=(sys.executable, str(script), "127.0.0.1", "1", "a b", "--c"))
    local = backend("local")
    preview = local.describe_launch(real)
    assert preview.argv == real.argv and preview.where == "control node"
    local.open()
    try:
        ended = threading.Event()
        seen: list[Outcome] = []
        local.start(real, lambda outcome: (seen.append(outcome), ended.set()))
        assert ended.wait(60)
    finally:
        local.close()
    assert seen[0].returncode == 0, seen[0]
    assert eval(seen[0].output) == [str(script), *preview.argv[2:]]  # noqa: S307 - our repr


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["agent", "process"])
def test_ssh_describes_its_command_from_the_bed_config(ssh_testbed, launch):
    ssh = backend("ssh", {"config_file": str(ssh_testbed.ssh_config), "launch": launch})
    before = children()
    preview = ssh.describe_launch(request())
    assert children() == before  # no ssh started
    argv = list(preview.argv)
    assert argv[:2] == ["ssh", "-T"] and ["-F", str(ssh_testbed.ssh_config)] == argv[
        argv.index("-F"):argv.index("-F") + 2]
    assert ("ControlPath=<control socket>" in argv) is (launch == "process")  # agent: none
    assert argv[-3:-1] == ["--", "node1"]
    assert TOKEN not in " ".join(argv)
    assert preview.per_host is (launch == "agent")
    if launch == "process":
        assert argv[-1] == remote_launch(request()).command
    else:
        assert "lofarexec-host_agent" in argv[-1] and shlex.join(NODE) not in argv[-1]


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["agent", "channel"])
def test_paramiko_describes_its_command_and_target_without_connecting(ssh_testbed, launch):
    paramiko = backend("paramiko", {"config_file": str(ssh_testbed.ssh_config),
                                    "launch": launch})
    preview = paramiko.describe_launch(request("node2"))
    assert preview.argv == ()
    port = ssh_testbed.port("node2")
    assert preview.where.startswith(f"{ssh_testbed.user}@{ssh_testbed.address('node2')}:{port} ")
    if launch == "channel":
        assert preview.command == remote_launch(request("node2")).command
    else:
        assert "lofarexec-host_agent" in preview.command and preview.per_host


def test_mpirun_describes_its_command():
    preview = backend("mpirun", {"allow_run_as_root": False}).describe_launch(request())
    launch = remote_launch(request())
    assert list(preview.argv) == [
        "mpirun", "--oversubscribe", "--bind-to", "none", "--mca",
        "odls_base_sigkill_timeout", "2", "--mca", "orte_local_tmpdir_base", "<session folder>",
        "-np", "1", "--host", "node1", "--", *launch.argv]


def test_srun_describes_its_command(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    preview = backend("srun", {"partition": "short"}).describe_launch(request())
    assert list(preview.argv[:9]) == ["srun", "-N1", "-n1", "-w", "node1", "--quiet", "-J",
                                      "lofarexec-dppp", "--input=<input FIFO>"]
    assert "--partition=short" in preview.argv
    assert list(preview.argv[-len(NODE):]) == list(NODE)


@pytest.mark.parametrize("launch", ["process", "agent"])
def test_cmdline_describes_its_filled_in_template(launch):
    preview = backend("cmdline", {"template": "docker exec -i w-{host} sh -c {command}",
                                  "launch": launch}).describe_launch(request())
    assert list(preview.argv[:6]) == ["docker", "exec", "-i", "w-node1", "sh", "-c"]
    assert preview.argv[6].startswith("exec python3 -I -S -c ")
    if launch == "process":
        assert preview.argv[6] == f"exec {remote_launch(request()).command}"
    assert TOKEN not in " ".join(preview.argv)


def test_cmdline_names_a_setting_every_launch_would_fail_on(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    out = io.StringIO()
    cmdline = backend("cmdline", {"template": "srun --jobid={slurm_job_id} {command}"})
    show_dry_run([ComputeJob("h", "x")], cmdline, Limits(), None,
                 lambda job, host, token: request(host, token=token), out)
    assert "backend cmdline cannot launch it: " in out.getvalue()
    assert "SLURM_JOB_ID is not set" in out.getvalue()


class RecordingLauncher:
    """Stands in for a backend's process launcher after ``open``: keeps the argv it is given."""

    def __init__(self) -> None:
        self.argv: list[str] = []

    def launch(self, argv, report, **options):
        from lofarexec.backend import NothingToKill

        self.argv = list(argv)
        return NothingToKill()


@pytest.mark.parametrize("method, settings, launcher", [
    ("ssh", {"launch": "process", "reuse_connections": False}, "_launcher"),
    ("cmdline", {"template": "sh -c {command}"}, "_launcher"),
    ("mpirun", {}, "_launcher"),
])
def test_the_preview_is_the_argv_a_real_start_gives_its_launcher(method, settings, launcher):
    """The backend opened for real, its start recorded: the argv equals the preview's (but
    for what exists only while running: mpirun's session folder)."""
    real = backend(method, settings)
    preview = real.describe_launch(request())
    real.open()
    original, recorder = getattr(real, launcher), RecordingLauncher()
    try:
        setattr(real, launcher, recorder)
        real.start(request(), lambda outcome: None)
    finally:
        setattr(real, launcher, original)
        real.close()
    if method == "mpirun":
        session = recorder.argv.index("orte_local_tmpdir_base") + 1
        recorder.argv[session] = "<session folder>"
    assert recorder.argv == list(preview.argv)


# -- a whole dry run -----------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime for path in folder.rglob("*")}


@pytest.fixture
def no_starts(monkeypatch):
    """Fail the test on any process start, connection or listening socket in this process."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run started something: {args[:2]}")

    for module, name in ((os, "posix_spawn"), (os, "posix_spawnp"), (os, "fork"),
                         (subprocess.Popen, "__init__"), (socket.socket, "connect"),
                         (socket.socket, "bind"), (socket.socket, "listen")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("method", ["local", pytest.param("ssh", marks=pytest.mark.slow),
                                    pytest.param("paramiko", marks=pytest.mark.slow)])
def test_a_dry_run_starts_connects_and_writes_nothing(tmp_path, request, method, capsys):
    """A whole dry run in this process: any process start, connect, bind or listen fails the
    test; the job directory is unchanged; no child process appears."""
    # the test bed (a session fixture, perhaps first made here) starts before starts are refused
    bed = request.getfixturevalue("ssh_testbed") if method != "local" else None
    request.getfixturevalue("no_starts")
    path = write_config(tmp_path, f"[{method}]\n" + (
        f"config_file = {bed.ssh_config}\n" if bed else "")
        + "[cluster]\nhosts = node3, node4\n[logging]\nadvertise_address = 127.0.0.1\n",
        method=method)
    config = load_config(path, job_name="dry", start_time="2026-01-01T00:00:00")
    before, procs = snapshot(tmp_path), children()
    jobs = [ComputeJob(host, f"{sys.executable} /x/node.py", arguments=[str(index)])
            for index, host in enumerate(["node1", "node2", "node1", None])]
    error = threading.Event()
    done = JobRunner(config, recipe_name="dry", error=error, dry_run=True).schedule(
        jobs, max_per_node=2)
    assert snapshot(tmp_path) == before and children() == procs
    assert list(done) == [0, 1, 2, 3] and not error.is_set()
    text = capsys.readouterr().out
    assert f"dry run: 4 jobs on 4 hosts with backend {method}" in text
    assert [line.split() for line in text.splitlines()[2:4]] == [
        ["node1", "2", "2", "0", "2"], ["node2", "1", "2", "1", "1"]]
    assert "1 jobs without a host (first 3, last 3)" in text
    assert "job 0 on node1:" in text and "job 1 on node2:" in text
    assert "argv not known" not in text and "cannot launch" not in text


def test_a_real_recipe_run_with_n_exits_0_and_leaves_nothing(tmp_path):
    """``python recipe.py -n`` of a mapfile-shaped shipped recipe: exit 0, the plan on
    stdout, no job directory, journal, log file or mapfile, and no process left."""
    from lofarexec.mapfiles.datamaps import DataMap, DataProduct

    DataMap([DataProduct(host, str(tmp_path / f"{name}.txt"))
             for host, name in (("h1", "a"), ("h2", "b"), ("h1", "c"))]).save(
        tmp_path / "in.mapfile")
    config = write_config(tmp_path, "[logging]\nlog_file = %(runtime_directory)s/run.log\n")
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "master" / "executable_args.py"), "-j", "ea",
         "-n", "-c", str(config), "--executable", "/bin/true", str(tmp_path / "in.mapfile")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "dry run: 3 jobs on 2 hosts with backend local; nothing is started" in result.stdout
    assert [line.split() for line in result.stdout.splitlines()[2:4]] == [
        ["h1", "2", "unlimited", "0", "2"], ["h2", "1", "unlimited", "1", "1"]]
    assert "job 0 on h1:\n" in result.stdout
    assert "arguments (fetched by the node over its channel): ['/bin/true', " in result.stdout
    assert "\n  control node: " in result.stdout
    assert snapshot(tmp_path) == before

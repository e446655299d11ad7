"""The srun backend on a real Slurm cluster (four fake nodes on this machine).

The contract suite through srun, and what it does not cover: the launch cap, launch failures
(retried, then a transport error with srun's words), node failures (never retried), steps of an
allocation, and the test bed's own start and stop.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from lofarexec.testing.contract import BackendContract, ContractSetup
from lofarexec.testing.slurmbed import SlurmTestBed, slurm_missing
from tests.helpers import kill_control_node_outright, wait_gone, write_config

pytestmark = pytest.mark.slow


def require_slurm() -> None:
    """Skip (or, under CI, fail) when the Slurm test bed cannot run here."""
    import os

    problem = slurm_missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def slurm_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmTestBed]:
    """Nodes n1..n4, with SLURM_CONF pointing at them for this module's tests."""
    require_slurm()
    with SlurmTestBed(tmp_path_factory.mktemp("slurm"), nodes=4) as bed:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(bed.slurm_conf))
            for name in ("SLURM_JOB_ID", "SLURM_JOBID"):
                patch.delenv(name, raising=False)
            yield bed


def srun_config(extra: str = "") -> str:
    return (f"[remote]\nmethod = srun\n[srun]\nremote_python = {sys.executable}\n{extra}"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")


def run(tmp_path: Path, text: str, jobs: list[ComputeJob], max_per_node: int | None = None):
    config = load_config(write_config(tmp_path, text), job_name="srun", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="srun", error=error).schedule(jobs, max_per_node=max_per_node)
    return error


def steps_left(bed: SlurmTestBed, timeout: float = 10.0) -> str:
    """The step list once empty, or what is still listed after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        listed = bed.client("squeue", "-h", "-s").stdout.strip()
        if not listed or time.monotonic() > deadline:
            return listed
        time.sleep(0.1)  # no event to wait on: step records live in slurmctld


class TestSrunContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path: Path, slurm_bed: SlurmTestBed) -> ContractSetup:
        return ContractSetup(
            method="srun", hosts=slurm_bed.node_names, directory=tmp_path,
            python=sys.executable,
            config=f"""
                [srun]
                mode = jobs
                remote_python = {sys.executable}
                [logging]
                bind_address = 127.0.0.1
                """,
        )

    def unreachable_host(self, setup: ContractSetup) -> str | None:
        return "n99"  # not a node of the bed: srun refuses it after its retries

    def failing_open_overrides(self, setup: ContractSetup) -> dict[str, dict[str, str]] | None:
        return {"srun": {"srun": "/no/such/srun"}}

    def test_kill_leaves_no_process_behind(self, contract_setup: ContractSetup,
                                           slurm_bed: SlurmTestBed) -> None:
        super().test_kill_leaves_no_process_behind(contract_setup)
        assert steps_left(slurm_bed) == ""  # every step was cancelled, not just its processes


# -- the backend alone --------------------------------------------------------------------------


class Reports:
    """Collects outcomes by job id; lets a test wait for all of them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.outcomes: dict[int, Outcome] = {}
        self.all_in = threading.Event()
        self.lock = threading.Lock()

    def callback(self, job_id: int):
        def report(outcome: Outcome) -> None:
            with self.lock:
                assert job_id not in self.outcomes, f"job {job_id} reported twice"
                self.outcomes[job_id] = outcome
                if len(self.outcomes) == self.count:
                    self.all_in.set()
        return report


def test_launch_cap_is_honoured(slurm_bed: SlurmTestBed) -> None:
    from lofarexec_srun import SrunBackend, SrunSettings

    backend = SrunBackend(SrunSettings(max_concurrent_launches=4, remote_python=sys.executable,
                                       mode="jobs"))
    backend.open()
    reports = Reports(40)
    try:
        for job_id in range(40):
            host = slurm_bed.node_names[job_id % 4]
            backend.start(LaunchRequest(job_id, host, ("true",), {}, token="t"),
                          reports.callback(job_id))
        launch_threads = [t for t in threading.enumerate() if t.name.startswith("srun-launch")]
        assert reports.all_in.wait(120), f"{40 - len(reports.outcomes)} jobs never reported"
    finally:
        backend.close()
    assert [reports.outcomes[i].returncode for i in range(40)] == [0] * 40, reports.outcomes
    assert backend.peak_launching == 4  # the cap was reached, and never passed
    assert len(launch_threads) <= 4  # the other 36 waited without a thread each


def test_unknown_node_is_a_transport_error_after_retries(slurm_bed, tmp_path):
    job = ComputeJob("n9", f"{sys.executable} -c pass")
    error = run(tmp_path, srun_config("launch_retries = 2\nretry_backoff = 0.05\n"), [job])
    assert error.is_set()
    assert job.results["state"] == "transport_error", job.results
    assert job.results["returncode"] is None
    reason = job.results["reason"]
    assert "srun could not launch the job (tried 3 times" in reason
    assert "srun: error: Unable to allocate resources: Invalid node name specified" in reason
    assert "\n" not in reason


def test_a_failing_node_script_is_a_failed_job_and_not_retried(slurm_bed, tmp_path, node_script,
                                                              caplog):
    ran = tmp_path / "ran"
    command = node_script(f"open({str(ran)!r}, 'a').write('x')\nreturn 3")
    job = ComputeJob("n2", command)
    with caplog.at_level(logging.INFO):
        run(tmp_path, srun_config(), [job])
    assert job.results["state"] == "failed", job.results
    assert job.results["returncode"] == 3
    assert ran.read_text() == "x"
    # srun takes no part in the end-of-run audit (Slurm ends a job's processes): said once
    skipped = [record.getMessage() for record in caplog.records
               if "end-of-run audit" in record.getMessage()]
    assert skipped == ["end-of-run audit skipped: the srun backend does not take part (it does "
                       "not declare audit = True; see [remote] audit in the configuration "
                       "reference)"]


def test_steps_of_an_allocation(slurm_bed, tmp_path, node_script, monkeypatch):
    granted = slurm_bed.client("salloc", "--no-shell", "-N4", "--exclusive", "-J", "steps")
    job_id = granted.stderr.split("Granted job allocation")[-1].split()[0]
    assert job_id.isdigit(), granted.stderr
    try:
        monkeypatch.setenv("SLURM_JOB_ID", job_id)
        out = tmp_path / "ids"
        command = node_script(
            f"open({str(out)!r}, 'a').write(os.environ['SLURM_JOB_ID'] + ' '"
            " + os.environ['SLURM_STEP_ID'] + '\\n')\nreturn 0")
        jobs = [ComputeJob(host, command) for host in slurm_bed.node_names]
        error = run(tmp_path, srun_config(), jobs)  # mode = auto: steps
        assert not error.is_set(), [job.results.get("reason") for job in jobs]
        seen = [line.split() for line in out.read_text().splitlines()]
        assert {job for job, _ in seen} == {job_id}
        assert len({step for _, step in seen}) == 4
    finally:
        slurm_bed.client("scancel", job_id)


def test_the_token_stays_off_srun_command_line(slurm_bed):
    from lofarexec_srun import SrunBackend, SrunSettings

    from lofarexec.transport.wrapper import remote_launch

    backend = SrunBackend(SrunSettings(mode="jobs", partition="bed", cpus_per_task=1))
    backend.open()
    backend.close()
    request = LaunchRequest(7, "n1", ("python3", "x.py"), {"PYTHONPATH": "/p"}, "s3cr3t-token")
    argv = backend.srun_argv(request, "/fifo", remote_launch(request))
    assert not any("s3cr3t-token" in word for word in argv)
    assert argv[:5] == ["srun", "-N1", "-n1", "-w", "n1"]
    assert {"--partition=bed", "--cpus-per-task=1", "--input=/fifo"} <= set(argv)


@pytest.mark.parametrize("bad", ["mode = sometimes", "max_concurrent_launches = 0",
                                 "extra_arguments = --x='unbalanced"])
def test_bad_settings_name_the_key(tmp_path, bad):
    from lofarexec.errors import ConfigError

    config = load_config(write_config(tmp_path, srun_config(bad + "\n")), job_name="x",
                         start_time="now")
    with pytest.raises(ConfigError, match=r"\[srun\]"):
        JobRunner(config, recipe_name="x", error=threading.Event()).schedule(
            [ComputeJob("n1", "true")])


# -- the test bed --------------------------------------------------------------------------------


def test_config_mistakes_found_at_open_are_config_errors(monkeypatch):
    from lofarexec_srun import SrunBackend, SrunSettings

    from lofarexec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[srun\], key 'srun': .*no such program on PATH"):
        SrunBackend(SrunSettings(srun="/no/such/srun")).open()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match=r"key 'mode': mode = steps, but SLURM_JOB_ID is not"):
        SrunBackend(SrunSettings(srun=sys.executable, mode="steps")).open()


def test_bed_start_and_stop_are_idempotent_and_leave_nothing(tmp_path_factory):
    from lofarexec.testing.slurmbed import _alive, _marked_processes

    require_slurm()
    bed = SlurmTestBed(tmp_path_factory.mktemp("bed"), nodes=1)
    try:
        bed.start()
        bed.start()
        processes = dict(bed.processes)
        assert bed.is_running() and len(processes) == 3
        running = bed.client("srun", "-N1", "-n1", "-w", "n1", "--quiet", "echo", "up")
        assert running.stdout == "up\n", running.stderr
    finally:
        bed.stop()
    bed.stop()
    assert not any(_alive(process) for process in processes.values())
    assert _marked_processes(str(bed.directory)) == []
    assert not bed.munge_folder.exists()
    assert not SlurmTestBed.load(bed.directory).is_running()


def test_killing_queued_launching_and_running_jobs(slurm_bed: SlurmTestBed) -> None:
    from lofarexec_srun import SrunBackend, SrunSettings
    from lofarexec_srun.job import LAUNCHING, QUEUED, RUNNING

    backend = SrunBackend(SrunSettings(max_concurrent_launches=2, remote_python=sys.executable,
                                       mode="jobs"))
    backend.open()
    third_launch = threading.Event()
    launch, calls = backend.launcher.launch, []

    def counting_launch(*args, **kwargs):  # the third srun starts once a first job runs
        calls.append(1)
        if len(calls) == 3:
            third_launch.set()
        return launch(*args, **kwargs)

    backend.launcher.launch = counting_launch  # type: ignore[method-assign]
    reports = Reports(12)
    try:
        handles = [backend.start(LaunchRequest(i, slurm_bed.node_names[i % 4], ("sleep", "300"),
                                               {}, token="t"), reports.callback(i))
                   for i in range(12)]
        assert third_launch.wait(30)
        phases = {handle.phase for handle in handles}  # type: ignore[attr-defined]
        started = time.monotonic()
        for handle in handles:
            handle.kill()
        assert reports.all_in.wait(30), f"{12 - len(reports.outcomes)} jobs never reported"
        # within the scheduler's patience for a killed job (10 s): no report is abandoned
        assert time.monotonic() - started < 10
    finally:
        backend.close()
    assert {QUEUED, LAUNCHING, RUNNING} <= phases
    assert steps_left(slurm_bed) == ""
    assert backend.launching == 0


def test_jobs_die_when_the_control_node_is_killed_outright(slurm_bed, tmp_path):
    """SIGKILL runs no handler: the closed FIFO (EOF to the wrappers) is what ends the nodes."""
    write_config(tmp_path, srun_config())
    pids = kill_control_node_outright(tmp_path, ["n1", "n2"], sys.executable)
    assert [pid for pid in pids if not wait_gone(pid, 5)] == []
    assert steps_left(slurm_bed) == ""

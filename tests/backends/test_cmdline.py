"""The cmdline backend: template parsing and filling, then real templates (marked slow).

The contract suite runs through ``sh -c {command}`` (local) and ``ssh -F CFG {host} {command}``
(the ssh test bed); further real templates check that what a template adds (``nice``,
``setsid -w``, ``env {env}``) happens, and that a kill still reaches the node.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from lofarexec_cmdline import CmdlineBackend, CmdlineSettings, job_name

from lofarexec.backend import LaunchRequest
from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from lofarexec.testing.contract import BackendContract, ContractSetup
from lofarexec.testing.sshbed import SshTestBed
from lofarexec.testing.sshbed_contract import SshBedContract
from tests.backends.test_mpirun import STUBBORN, Outcomes, PidPipe
from tests.helpers import wait_gone, write_config

TOKEN = "tok-" + "5ecret" * 6


def launch_request(argv: list[str], host: str = "node9", **environment: str) -> LaunchRequest:
    env = {"PATH": os.environ["PATH"], **environment}
    return LaunchRequest(job_id=3, host=host, argv=tuple(argv), environment=env, token=TOKEN)


@pytest.fixture
def opened():
    """Open cmdline backends for a template; every one is closed afterwards."""
    made: list[CmdlineBackend] = []

    def make(template: str, **settings: object) -> CmdlineBackend:
        made.append(CmdlineBackend(CmdlineSettings(template=template, **settings)))  # type: ignore[arg-type]
        made[-1].open()
        return made[-1]

    yield make
    for each in made:
        each.close()


# ---------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("template, complaint", [
    ("ssh {hots} {command}", r"unknown placeholder \{hots\}"),
    ("ssh {host} {command", "expected '}'"),
    ("ssh {host} '{command}", "No closing quotation"),
    ("ssh {host}", r"has no \{command\}"),
    ("docker run -e{env} {command}", r"\{env\} expands to several words"),
    ("docker run {docker_env}x {command}", r"\{docker_env\} expands to several words"),
    ("ssh {host!r} {command}", "takes no '!' or ':' part"),
    ("ssh {0} {command}", r"unknown placeholder \{0\}"),
    ("docker run -i {docker_image} sh -c {command}", "set 'docker_image = ...'"),
])
def test_a_bad_template_is_a_config_error_naming_the_section(tmp_path, template, complaint):
    path = write_config(tmp_path, f"[cmdline]\ntemplate = {template}\n", method="cmdline")
    config = load_config(path, job_name="t", start_time="now")
    with pytest.raises(ConfigError, match=complaint) as caught:
        config.section_settings("cmdline", CmdlineSettings)
    assert "[cmdline]" in str(caught.value) and "pipeline.cfg" in str(caught.value)


def test_the_original_remote_cmdline_and_docker_image_keys_work(tmp_path):
    path = write_config(tmp_path, "[remote]\nmethod = cmdline\n"
                        "cmdline = docker run -i {docker_image} sh -c {command}\n"
                        "[docker]\nimage = lofar:latest\n")
    config = load_config(path, job_name="t", start_time="now")
    settings = config.section_settings("cmdline", CmdlineSettings)
    assert settings.template == "docker run -i {docker_image} sh -c {command}"
    assert settings.docker_image == "lofar:latest"


def test_cmdline_section_wins_over_the_remote_key(tmp_path):
    path = write_config(tmp_path, "[remote]\nmethod = cmdline\ncmdline = ssh {host} {command}\n"
                        "[cmdline]\ntemplate = nice {command}\n")
    config = load_config(path, job_name="t", start_time="now")
    assert config.section_settings("cmdline", CmdlineSettings).template == "nice {command}"


def test_a_missing_template_says_where_to_put_it(tmp_path):
    path = write_config(tmp_path, "[cmdline]\nnr_cores = 2\n", method="cmdline")
    config = load_config(path, job_name="t", start_time="now")
    with pytest.raises(ConfigError, match=r"add 'template = \.\.\.' under \[cmdline\]"):
        config.section_settings("cmdline", CmdlineSettings)


def test_each_word_is_filled_on_its_own_so_spaces_never_split_a_value(opened):
    backend = opened(
        "launch --host={host} -u {uid} -c {nr_cores} --image {docker_image} "
        "--name {job_name} {env} {docker_env} '{{literal}}' 'two words {host}' {command}",
        docker_image="lofar:4.1", nr_cores=8)
    request = launch_request([sys.executable, "-u", "/x y/dppp.py", "127.0.0.1", "80"],
                             host="host a", SPACED="a b")
    argv = backend.command_line(request, "THE COMMAND")
    env_words = [f"PATH={os.environ['PATH']}", "SPACED=a b"]
    assert argv == [
        "launch", "--host=host a", "-u", str(os.geteuid()), "-c", "8", "--image", "lofar:4.1",
        "--name", "dppp.py", *env_words, "-e", env_words[0], "-e", env_words[1],
        "{literal}", "two words host a", "THE COMMAND"]
    assert not any(TOKEN in word for word in argv)


@pytest.mark.parametrize("argv, name", [
    (["/usr/bin/python3", "-u", "/n/dppp.py", "h", "1"], "dppp.py"),
    (["python", "/n/node.py"], "node.py"),
    (["/opt/bin/NDPPP", "x.parset"], "NDPPP"),
    (["python3.11"], "python3.11"),
])
def test_job_name_is_the_script_not_the_interpreter(argv, name):
    assert job_name(argv) == name


def test_slurm_job_id_comes_from_the_allocation(opened, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="SLURM_JOB_ID is not set"):
        opened("srun --jobid={slurm_job_id} -w {host} sh -c {command}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    backend = opened("srun --jobid={slurm_job_id} -w {host} sh -c {command}")
    assert backend.command_line(launch_request(["x"]), "C")[:2] == ["srun", "--jobid=4242"]


@pytest.mark.parametrize("host", ["", "  ", "-oProxyCommand=evil"])
def test_a_host_that_could_be_an_option_is_a_transport_error(opened, host):
    outcomes = Outcomes()
    opened("ssh {host} {command}").start(launch_request(["true"], host=host), outcomes)
    assert "not a host name" in (outcomes.wait(1).transport_error or "")


# ---------------------------------------------------------------------------------- for real


@pytest.mark.slow
class TestShellTemplateContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path):
        return ContractSetup(method="cmdline", hosts=["node1", "node2", "node3", "node4"],
                             directory=tmp_path, python=sys.executable,
                             config="[cmdline]\ntemplate = sh -c {command}\n"
                                    "[logging]\nbind_address = 127.0.0.1\n")

    def failing_open_overrides(self, setup: ContractSetup) -> dict[str, dict[str, str]] | None:
        if os.environ.get("SLURM_JOB_ID"):
            return None  # inside an allocation the template below opens fine
        return {"cmdline": {"template": "sh -c {command} {slurm_job_id}"}}


@pytest.mark.slow
class TestSshTemplateContract(SshBedContract):
    method = "cmdline"
    launch = "process"

    def backend_section(self, bed: SshTestBed) -> str:
        return (f"[cmdline]\ntemplate = ssh -F {bed.ssh_config} {{host}} {{command}}\n"
                f"launch = {self.launch}\n")


@pytest.mark.slow
class TestSshTemplateAgentContract(TestSshTemplateContract):
    """``launch = agent``: the template runs once per host, to start its host agent."""

    launch = "agent"

    def test_one_launcher_per_host_whatever_the_number_of_jobs(self, contract_setup,
                                                                  ssh_testbed) -> None:
        log = Path(ssh_testbed.directory) / "hosts" / "node4" / "sshd.log"
        before = log.read_text().count("Accepted publickey")
        jobs = [ComputeJob("node4", "/bin/true") for _ in range(12)]
        error = self.run(contract_setup, jobs, max_per_node=3)
        assert not error.is_set(), [job.results.get("reason") for job in jobs]
        assert log.read_text().count("Accepted publickey") - before == 1


@pytest.mark.parametrize("template", ["srun -c {nr_cores} sh -c {command}",
                                      "env {env} sh -c {command}", "run {job_name} {command}"])
def test_agent_mode_refuses_a_template_with_what_differs_per_job(template):
    with pytest.raises(ValueError, match="launch = agent runs the template once per host"):
        CmdlineSettings(template=template, launch="agent")


def probe(code: str) -> list[str]:
    """A node argv that runs ``code`` and prints what it finds."""
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.mark.slow
def test_nice_lowers_the_node_s_priority(opened):
    outcomes = Outcomes()
    opened("nice -n 5 sh -c {command}").start(
        launch_request(probe("import os; print(os.nice(0))")), outcomes)
    outcome = outcomes.wait()
    assert outcome.returncode == 0, outcome
    assert int(outcome.output) == os.nice(0) + 5


@pytest.mark.slow
def test_env_words_reach_the_launcher_and_the_exit_status_stays_exact(opened):
    outcomes = Outcomes()
    opened("env {env} sh -c {command}").start(
        launch_request(probe("import os; print(os.environ['SPACED']); raise SystemExit(137)"),
                       SPACED="a  b"), outcomes)
    outcome = outcomes.wait()
    assert (outcome.returncode, outcome.output) == (137, "a  b\n")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "SIGKILL to the launcher"])
def test_setsid_w_runs_the_node_in_a_session_of_its_own_and_a_kill_still_reaches_it(
        opened, tmp_path, how):
    """Outside the launcher's process group, only the wrapper's stdin ending stops the node."""
    pipe = PidPipe(tmp_path)
    outcomes = Outcomes()
    handle = opened("setsid -w sh -c {command}").start(
        launch_request([sys.executable, "-c", STUBBORN, str(pipe.path)]), outcomes)
    pids = pipe.pids()
    assert os.getsid(pids[0]) != os.getsid(handle.pid)
    if how == "kill":
        handle.kill()
    else:
        os.killpg(handle.pid, signal.SIGKILL)
    assert wait_gone(pids, 2.0), f"{pids} outlived the kill"
    outcomes.wait()


@pytest.mark.slow
def test_command_may_be_part_of_a_longer_shell_line(opened, tmp_path):
    outcomes = Outcomes()
    opened(f"sh -c 'cd {tmp_path} && {{command}}'").start(
        launch_request(probe("import os; print(os.getcwd())")), outcomes)
    outcome = outcomes.wait()
    assert (outcome.returncode, outcome.output) == (0, f"{tmp_path}\n")


@pytest.mark.slow
def test_a_launcher_that_never_runs_the_command_is_a_transport_error(opened):
    outcomes = Outcomes()
    opened("sh -c 'echo no such container >&2; exit 125' {command}").start(
        launch_request(probe("pass")), outcomes)
    outcome = outcomes.wait()
    assert outcome.returncode is None
    assert outcome.transport_error == ("the remote launcher failed (status 125): "
                                       "no such container")


@pytest.mark.slow
def test_a_missing_launcher_program_is_a_transport_error(opened):
    outcomes = Outcomes()
    opened("/nonexistent/launch {command}").start(launch_request(probe("pass")), outcomes)
    assert "cannot start '/nonexistent/launch'" in (outcomes.wait().transport_error or "")


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["process", "agent"])
def test_the_end_of_run_audit_kills_what_a_node_left_through_the_template(
        ssh_testbed, tmp_path, caplog, launch):
    """A sleeper double-forked out of its job's process group on node1 and node2 is named by
    host and pid after the run and killed, through ``ssh {host} {command}``."""
    from tests.run.test_audit import assert_named_by_host_and_killed, escaping_jobs

    jobs, pid_files = escaping_jobs(tmp_path, ["node1", "node2"])
    text = (f"[remote]\nmethod = cmdline\n[cmdline]\nlaunch = {launch}\n"
            f"template = ssh -F {ssh_testbed.ssh_config} {{host}} {{command}}\n"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")
    config = load_config(write_config(tmp_path, text), job_name="audit", start_time="now")
    with caplog.at_level(logging.WARNING):
        JobRunner(config, recipe_name="audit", error=threading.Event(),
                  progress=False).schedule(jobs)
    assert all(job.results["state"] == "succeeded" for job in jobs), jobs[0].results
    assert_named_by_host_and_killed(caplog, ["node1", "node2"], pid_files)

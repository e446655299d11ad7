"""The ssh backend on the real multi-host test bed: what the contract suite does not cover.

Error classification, host keys, connection reuse and tear-down, the default method, the seed's
example over ssh, and a control node that dies without warning.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lofarexec.backend import LaunchRequest
from lofarexec.config import load_config
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from tests.helpers import REPO, kill_control_node_outright, wait_gone, write_config

pytestmark = pytest.mark.slow


def ssh_config_text(bed, extra_ssh: str = "", method: str | None = "ssh") -> str:
    remote = f"[remote]\nmethod = {method}\n" if method else "[remote]\n"
    return (remote + f"[ssh]\nconfig_file = {bed.ssh_config}\n{extra_ssh}"
            "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")


def run(tmp_path: Path, text: str, jobs, max_per_node=None):
    path = write_config(tmp_path, text)
    if "method = ssh" not in text:  # write_config's base [remote] names a method: drop it
        path.write_text(path.read_text().replace("[remote]\nmethod = local\n", ""))
    config = load_config(path, job_name="ssh", start_time="now")
    error = threading.Event()
    JobRunner(config, recipe_name="ssh", error=error).schedule(jobs, max_per_node=max_per_node)
    return error


def accepted_logins(bed, host: str) -> int:
    log = Path(bed.ssh_config).parent.parent / "hosts" / host / "sshd.log"
    return log.read_text().count("Accepted publickey")


def test_a_config_without_method_uses_ssh(ssh_testbed, tmp_path, caplog):
    job = ComputeJob("node2", f"{ssh_testbed.python} -c pass")
    with caplog.at_level("DEBUG"):
        run(tmp_path, ssh_config_text(ssh_testbed, method=None), [job])
    assert job.results["state"] == "succeeded", job.results
    assert job.results["backend"] == "ssh"
    assert "Dispatching command to node2 with ssh" in caplog.text


def test_seed_example_over_ssh(ssh_testbed, tmp_path):
    config = write_config(tmp_path, ssh_config_text(ssh_testbed))
    recipe = REPO / "recipes" / "master" / "example_parallel.py"
    result = subprocess.run([sys.executable, str(recipe), "-j", "foo", "-d", "-c", str(config),
                             "node3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"DEBUG   example_parallel: Logging to 127\.0\.0\.1:\d+\n", result.stderr)
    assert "Dispatching command to node3 with ssh" in result.stderr
    received = "INFO    node.node3.example_parallel: Received example_argument as argument"
    assert received in result.stderr
    assert "recipe example_parallel completed" in result.stderr


def test_host_down_is_a_transport_error_and_others_carry_on(ssh_testbed, tmp_path):
    ssh_testbed.stop_host("node4")
    try:
        jobs = [ComputeJob(host, "/bin/true") for host in ("node1", "node4", "node2")]
        error = run(tmp_path, ssh_config_text(ssh_testbed), jobs)
    finally:
        ssh_testbed.start_host("node4")
    assert [job.results["state"] for job in jobs] == ["succeeded", "transport_error", "succeeded"]
    reason = jobs[1].results["reason"]
    assert "the connection failed" in reason and "Connection refused" in reason
    assert "\n" not in reason
    assert jobs[1].results["returncode"] is None
    assert error.is_set()


def test_unknown_host_key_is_refused_without_a_prompt(ssh_testbed, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    job = ComputeJob("node1", "/bin/true")
    started = time.monotonic()
    run(tmp_path, ssh_config_text(ssh_testbed, f"options = -o UserKnownHostsFile={empty}\n"),
        [job])
    assert time.monotonic() - started < 15
    assert job.results["state"] == "transport_error"
    assert "Host key verification failed" in job.results["reason"]


def test_accept_new_records_the_key_of_a_new_host(ssh_testbed, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    job = ComputeJob("node1", "/bin/true")
    run(tmp_path, ssh_config_text(
        ssh_testbed, f"host_key_policy = accept-new\noptions = -o UserKnownHostsFile={known}\n"),
        [job])
    assert job.results["state"] == "succeeded", job.results
    assert ssh_testbed.address("node1") in known.read_text()


def test_a_changed_host_key_is_refused(ssh_testbed, tmp_path):
    known = tmp_path / "known_hosts"
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    public = other_key.with_suffix(".pub").read_text().split()
    address, port = ssh_testbed.address("node1"), ssh_testbed.port("node1")
    name = address if port == 22 else f"[{address}]:{port}"
    known.write_text(f"{name} {public[0]} {public[1]}\n")
    job = ComputeJob("node1", "/bin/true")
    run(tmp_path, ssh_config_text(
        ssh_testbed, f"host_key_policy = accept-new\noptions = -o UserKnownHostsFile={known}\n"),
        [job])
    assert job.results["state"] == "transport_error"
    assert "host key" in job.results["reason"].lower()


def test_connections_are_reused_and_torn_down(ssh_testbed, tmp_path, monkeypatch):
    private_tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: a socket lives here
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # where the control folder goes
    before = accepted_logins(ssh_testbed, "node2")
    jobs = [ComputeJob("node2", "/bin/true") for _ in range(10)]  # an ssh process each
    run(tmp_path, ssh_config_text(ssh_testbed, "launch = process\n"), jobs, max_per_node=1)
    assert all(job.results["state"] == "succeeded" for job in jobs)
    assert accepted_logins(ssh_testbed, "node2") - before == 1
    leftovers = subprocess.run(["pgrep", "-f", str(private_tmp)], capture_output=True, text=True)
    assert leftovers.stdout == ""  # the ControlMaster process is gone
    assert list(private_tmp.iterdir()) == []
    private_tmp.rmdir()


@pytest.mark.parametrize("launch, logins", [("process", 4), ("agent", 1)])
def test_no_reuse_means_a_login_per_ssh_process(ssh_testbed, tmp_path, launch, logins):
    """One per job with a process per job, and one for the end-of-run audit; one per host
    with its agent (the audit is a job of the agent), as with reuse: it needs no master."""
    before = accepted_logins(ssh_testbed, "node3")
    jobs = [ComputeJob("node3", "/bin/true") for _ in range(3)]
    run(tmp_path, ssh_config_text(ssh_testbed, f"reuse_connections = no\nlaunch = {launch}\n"),
        jobs, max_per_node=1)
    assert [job.results["state"] for job in jobs] == ["succeeded"] * 3
    assert accepted_logins(ssh_testbed, "node3") - before == logins


def test_an_agent_is_one_plain_ssh_per_host_without_a_master(ssh_testbed, tmp_path,
                                                              monkeypatch):
    """launch = agent: one login and one local ssh process for all of a host's jobs, and no
    ControlMaster (no control folder, no socket, no master left)."""
    made: list[str] = []
    mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *args, **options: made.append(
        options.get("prefix", "")) or mkdtemp(*args, **options))
    before = accepted_logins(ssh_testbed, "node1")
    jobs = [ComputeJob("node1", "/bin/true") for _ in range(6)]
    run(tmp_path, ssh_config_text(ssh_testbed), jobs, max_per_node=2)
    assert all(job.results["state"] == "succeeded" for job in jobs)
    assert accepted_logins(ssh_testbed, "node1") - before == 1
    assert "lofarexec-ssh-" not in made  # no control folder: no master


@pytest.mark.parametrize("launch", ["agent", "process"])
def test_a_users_controlmaster_config_leaves_no_master_behind(ssh_testbed, tmp_path, launch):
    """``ControlMaster auto`` with ``ControlPersist yes`` in the user's ssh config: the run's own
    ssh processes never become such a master, which would outlive the run by hours (an agent;
    a job's ssh when connections are not shared)."""
    sockets = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # short: a socket lives here
    config = tmp_path / "ssh_config"
    config.write_text(f"ControlMaster auto\nControlPath {sockets}/%C\nControlPersist yes\n"
                      + Path(ssh_testbed.ssh_config).read_text())
    text = ssh_config_text(ssh_testbed, f"launch = {launch}\nreuse_connections = no\n")
    jobs = [ComputeJob("node2", "/bin/true") for _ in range(2)]
    try:
        run(tmp_path, text.replace(str(ssh_testbed.ssh_config), str(config)), jobs)
        assert [job.results["state"] for job in jobs] == ["succeeded"] * 2
        assert list(sockets.iterdir()) == []  # no master was started
    finally:
        for socket_path in sockets.iterdir():  # a master left by a failure: stop it
            subprocess.run(["ssh", "-F", str(config), "-o", f"ControlPath={socket_path}",
                            "-O", "exit", "node2"], capture_output=True, timeout=10)
        shutil.rmtree(sockets, ignore_errors=True)


def test_the_token_never_reaches_a_command_line(ssh_testbed):
    from lofarexec_ssh import SshBackend

    from lofarexec.transport.wrapper import remote_launch

    backend = SshBackend()
    backend.open()
    backend.close()
    request = LaunchRequest(7, "node1", ("python3", "x.py", "h", "1"), {"PYTHONPATH": "/p"},
                            token="s3cr3t-token")
    launch = remote_launch(request)
    argv = [*backend.ssh_argv("node1"), launch.command]
    assert not any("s3cr3t-token" in word for word in argv)
    assert b"s3cr3t-token" not in launch.stdin  # base64 on stdin, never plain either
    assert argv[argv.index("--") + 1] == "node1"


def test_remote_jobs_die_when_the_control_node_is_killed_outright(ssh_testbed, tmp_path):
    write_config(tmp_path, ssh_config_text(ssh_testbed))
    # no handler runs: only stdin EOF tells the hosts
    pids = kill_control_node_outright(tmp_path, ["node1", "node2"], ssh_testbed.python)
    assert [pid for pid in pids if not wait_gone(pid, 5)] == []
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def test_control_sockets_stay_short_under_a_long_tmpdir(tmp_path, monkeypatch):
    from lofarexec_ssh import _control_directory

    deep = tmp_path / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    directory = _control_directory()
    try:
        assert len(directory) <= 90 and oct(os.stat(directory).st_mode)[-3:] == "700"
    finally:
        os.rmdir(directory)


def test_a_missing_ssh_client_is_named(ssh_testbed, tmp_path):
    job = ComputeJob("node1", "/bin/true")
    run(tmp_path, ssh_config_text(ssh_testbed, "ssh = /no/such/ssh\n"), [job])
    assert job.results["state"] == "transport_error"
    assert "cannot start '/no/such/ssh'" in job.results["reason"]


def test_a_killed_agent_fails_its_jobs_and_its_orphans_are_killed(ssh_testbed, tmp_path):
    from lofarexec_ssh import SshBackend, SshSettings

    backend = SshBackend(SshSettings(config_file=str(ssh_testbed.ssh_config), kill_grace=0.3))
    backend.open()
    outcomes: list = []
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        node = ("import os, socket, sys, time; socket.create_connection(('127.0.0.1', "
                "int(sys.argv[1]))).sendall(b'%d %d' % (os.getpid(), os.getppid())); "
                "time.sleep(300)")
        request = LaunchRequest(1, "node2", (ssh_testbed.python, "-c", node,
                                             str(listener.getsockname()[1])), {}, token="t")
        try:
            backend.start(request, lambda outcome: (outcomes.append(outcome), done.set()))
            link, _ = listener.accept()
            with link:
                job_pid, agent_pid = map(int, link.makefile().read().split())
            os.kill(agent_pid, signal.SIGKILL)  # as the OOM killer would: the job is orphaned
            assert done.wait(30)
        finally:
            backend.close()
    assert outcomes[0].transport_error.startswith("node2: the host's agent or its connection "
                                                  "ended (status 255)"), outcomes
    assert wait_gone(job_pid, 0.5)  # killed over ssh before the job was reported


def test_an_agent_cut_off_from_the_control_node_kills_its_jobs(ssh_testbed):
    """A link that dies without a word shows no end-of-file on the host for a long time. Here
    the host's sshd session is frozen: neither pings nor an EOF get through, and the bed's
    client has no keepalives, so only the agent's silence limit can end the job."""
    from lofarexec.transport.agent import AgentClient
    from lofarexec.transport.agent_frames import Pinger
    from lofarexec.transport.wrapper import agent_command

    pinger = Pinger(0.5)  # the agent gives up after 2 s without a frame
    argv = ssh_testbed.ssh_command("node3", agent_command(ssh_testbed.python,
                                                          pinger.silence_limit))
    client = AgentClient("node3", argv, kill_grace=0.3, pinger=pinger)
    outcomes: list = []
    reported = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        node = ("import os, socket, sys, time; socket.create_connection(('127.0.0.1', "
                "int(sys.argv[1]))).sendall(b'%d %d' % (os.getpid(), os.getppid())); "
                "time.sleep(300)")
        client.start(LaunchRequest(1, "node3", (ssh_testbed.python, "-c", node,
                                                str(listener.getsockname()[1])), {}, token="t"),
                     lambda outcome: (outcomes.append(outcome), reported.set()))
        link, _ = listener.accept()
        with link:
            job_pid, agent_pid = map(int, link.makefile().read().split())
    with open(f"/proc/{agent_pid}/stat") as stat:
        session = int(stat.read().rsplit(")", 1)[1].split()[1])
    assert Path(f"/proc/{session}/comm").read_text().strip() == "sshd"
    os.kill(session, signal.SIGSTOP)
    try:
        assert wait_gone(job_pid, 5.0) and wait_gone(agent_pid, 5.0)
        assert reported.wait(5.0)  # the control node gives up on the silent agent as soon
    finally:
        os.kill(session, signal.SIGCONT)
        client.close()
    assert "node3: the host's agent was silent for 2 s" in outcomes[0].transport_error, outcomes


def test_a_missing_config_file_stops_the_run_before_any_job(tmp_path):
    from lofarexec.errors import ConfigError

    missing = tmp_path / "no_such_ssh_config"
    marker = tmp_path / "ran"
    job = ComputeJob("node1", f"touch {marker}")
    text = f"[remote]\nmethod = ssh\n[ssh]\nconfig_file = {missing}\n"
    with pytest.raises(ConfigError) as excinfo:
        run(tmp_path, text, [job])
    message = str(excinfo.value)
    assert message.startswith(f"{tmp_path / 'pipeline.cfg'}, section [ssh]: config_file ")
    assert str(missing) in message and "\n" not in message
    assert job.results.get("state") is None and not marker.exists()

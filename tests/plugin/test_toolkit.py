"""The backend toolkit as a plugin author uses it: each public name of ``lofarexec.transport``
that no transport's own tests exercise by name, used here the way docs/api.rst describes it."""

from __future__ import annotations

import dataclasses
import errno
import secrets
import selectors
import signal
import subprocess
import sys
import threading

import pytest

from lofarexec.backend import LaunchRequest
from lofarexec.testing.backend_promises import CountedReports
from lofarexec.transport import (
    DRAIN_GRACE,
    KILL_CONFIRM,
    AgentPool,
    ProcessHandle,
    ProcessLauncher,
    RemoteLaunch,
    WakePipe,
    alive_interval_field,
    check_shared_settings,
    job_environment,
    job_identity,
    keep_tail,
    kill_grace_field,
    last_lines,
    orphan_kill_command,
    out_of_descriptors,
    remote_launch,
    remote_python_field,
    signal_group,
    start_through_wrapper,
    take_frames,
)


def request(*argv: str, host: str = "node1") -> LaunchRequest:
    return LaunchRequest(job_id=7, host=host, argv=argv, environment={"NODE_VALUE": "x y"},
                         token=secrets.token_hex(16), recipe_name="toolkit")


@pytest.fixture
def launcher():
    processes = ProcessLauncher(kill_grace=1.0, name="toolkit-test")
    processes.start()
    yield processes
    processes.close()


@dataclasses.dataclass(frozen=True)
class SharedSettings:
    remote_python: str = remote_python_field("the launch wrapper")
    kill_grace: float = kill_grace_field()
    alive_interval: int = alive_interval_field("seconds between pings")

    def __post_init__(self) -> None:
        check_shared_settings(self)


def test_shared_settings_fields_carry_defaults_help_and_bounds():
    settings = SharedSettings()
    assert (settings.remote_python, settings.alive_interval) == ("python3", 5)
    for field in dataclasses.fields(SharedSettings):
        assert field.metadata["help"], field.name
    with pytest.raises(ValueError, match="kill_grace = -1 is out of range"):
        SharedSettings(kill_grace=-1.0)
    with pytest.raises(ValueError, match="remote_python is empty"):
        SharedSettings(remote_python=" ")


def test_job_identity_and_environment_say_which_job_it_is():
    launch = request("/bin/true")
    identity = job_identity(launch)
    assert identity == {"LOFAREXEC_JOB_ID": "7", "LOFAREXEC_TOKEN": launch.token,
                        "LOFAREXEC_HOST": "node1"}
    assert job_environment(launch) == {"NODE_VALUE": "x y", **identity}


def test_a_job_through_the_launch_wrapper_keeps_its_token_off_the_command_line(launcher):
    job = request("/bin/sh", "-c", "exit 3")
    launch = remote_launch(job, python=sys.executable)
    assert isinstance(launch, RemoteLaunch) and job.token not in launch.command
    reports = CountedReports()
    start_through_wrapper(launcher, job, reports, lambda command: ["/bin/sh", "-c", command],
                          python=sys.executable)
    assert reports.wait().returncode == 3, reports.outcomes


def test_a_process_group_is_signalled_through_its_handle_pid(launcher):
    reports = CountedReports()
    handle = launcher.launch(["sleep", "300"], reports)
    assert isinstance(handle, ProcessHandle)
    signal_group(handle.pid, signal.SIGTERM)
    assert reports.wait().returncode == -signal.SIGTERM
    signal_group(handle.pid, signal.SIGTERM)  # gone: nothing happens, nothing raised


def test_the_agent_pool_runs_a_hosts_jobs_through_one_agent():
    pool = AgentPool(lambda host, command: ["/bin/sh", "-c", command], program="sh",
                     python=sys.executable, kill_grace=1.0, alive_interval=0,
                     orphan_timeout=5.0 + KILL_CONFIRM)
    try:
        reports = [CountedReports(), CountedReports()]
        for code, report in zip((4, 0), reports):
            pool.start(request("/bin/sh", "-c", f"exit {code}"), report)
        assert [report.wait().returncode for report in reports] == [4, 0]
    finally:
        pool.close()


def test_frames_about_jobs_no_longer_there_are_dropped():
    assert list(take_frames([(b"E", 3, b"0")], {})) == []


def test_orphan_kill_command_kills_the_groups_it_names():
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        subprocess.run(["/bin/sh", "-c", orphan_kill_command([orphan.pid], 0.1)], check=True,
                       timeout=30)
        assert orphan.wait(timeout=30) == -signal.SIGTERM
    finally:
        orphan.kill()
        orphan.wait()


def test_wake_pipe_wakes_a_sleeping_selector():
    pipe = WakePipe()
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        threading.Thread(target=pipe.wake).start()
        assert selector.select(timeout=30), "no wake-up"
        pipe.drain()
        assert selector.select(timeout=0) == []
        selector.unregister(pipe)
    pipe.close()
    pipe.close()
    pipe.wake()  # after close: ignored


def test_output_tails_and_last_lines():
    tail = bytearray()
    keep_tail(tail, b"abc", limit=4)
    keep_tail(tail, b"defg", limit=4)
    assert bytes(tail) == b"defg"
    assert last_lines("first\n\n  second \nthird\n", 2) == "second | third"


def test_out_of_descriptors_says_what_to_raise():
    assert "ulimit -n" in out_of_descriptors(OSError(errno.EMFILE, "Too many open files"))
    assert "fs.file-max" in out_of_descriptors(OSError(errno.ENFILE, "File table overflow"))
    assert out_of_descriptors(OSError(errno.ENOENT, "No such file")) is None


def test_grace_periods_are_short_and_positive():
    """The seconds a transport waits for output after an exit and for an agent's kill answer."""
    assert 0 < DRAIN_GRACE <= 10 and 0 < KILL_CONFIRM <= 10

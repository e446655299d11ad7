"""What the paramiko backend's tests on the sshd test bed share: opened backends (closed after,
no thread left behind), a job's pids over TCP, launch requests, known_hosts files."""

from __future__ import annotations

import socket
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from lofarexec_paramiko import ParamikoBackend, ParamikoSettings

from lofarexec.backend import LaunchRequest

#: A job that ignores SIGTERM, has a child, tells the test both pids over TCP, then waits.
STUBBORN = textwrap.dedent("""\
    import os, signal, socket, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as link:
        link.sendall(b"%d %d" % (os.getpid(), child.pid))
    time.sleep(300)
    """)


# -- helpers ---------------------------------------------------------------------------------
class PidCatcher:
    """A local port a :data:`STUBBORN` job reports its pids to; waiting is on ``accept``."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)

    def argv(self, python: str) -> tuple[str, ...]:
        return (python, "-c", STUBBORN, str(self.listener.getsockname()[1]))

    def pids(self) -> list[int]:
        link, _ = self.listener.accept()
        with link:
            return [int(word) for word in link.makefile().read().split()]

    def close(self) -> None:
        self.listener.close()


def request(job_id: int, host: str, *argv: str) -> LaunchRequest:
    return LaunchRequest(job_id=job_id, host=host, argv=argv, environment={}, token="secret")


def known_hosts_name(bed, host: str) -> str:
    """How known_hosts names a bed host: plain on port 22 (as on a fresh machine), else [a]:p."""
    address, port = bed.address(host), bed.port(host)
    return address if port == 22 else f"[{address}]:{port}"


@pytest.fixture
def open_backends(tmp_path: Path) -> Iterator[Callable[..., ParamikoBackend]]:
    """Opened backends (an empty ssh config unless given); all closed after, twice, and no
    thread of theirs left behind."""
    before = set(threading.enumerate())
    made: list[ParamikoBackend] = []
    empty_config = tmp_path / "empty_ssh_config"
    empty_config.write_text("")

    def make(**settings: object) -> ParamikoBackend:
        settings.setdefault("config_file", str(empty_config))
        backend = ParamikoBackend(ParamikoSettings(**settings))  # type: ignore[arg-type]
        backend.open()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
        backend.close()  # safe twice
    assert [thread for thread in threading.enumerate() if thread not in before] == []


@pytest.fixture
def backends(open_backends, ssh_testbed) -> Callable[..., ParamikoBackend]:
    """Opened backends reaching the bed's hosts through its ssh config."""
    return lambda **settings: open_backends(config_file=str(ssh_testbed.ssh_config), **settings)


@pytest.fixture(params=["agent", "channel"])
def either_mode(request, backends) -> Callable[..., ParamikoBackend]:
    """Opened backends of each launch mode in turn."""
    return lambda **settings: backends(launch=request.param, **settings)


def carrier(handle) -> paramiko.Channel:
    """The channel a started job runs in: its own (channel mode) or its agent's."""
    job = handle._job  # reach past the backend, to end the channel the way a crash would
    return job.channel if job.channel is not None else job.connection._agent.channel


@pytest.fixture
def pid_catcher() -> Iterator[PidCatcher]:
    catcher = PidCatcher()
    yield catcher
    catcher.close()


def known_hosts_file(path: Path, lines: str = "") -> str:
    path.write_text(lines)
    return str(path)

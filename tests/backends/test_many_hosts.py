"""Many hosts from one control node (issue 17): 64 host names on the sshd test bed, every job
succeeding, and the hosts' connections closed together rather than one after another."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lofarexec_paramiko import ParamikoBackend, ParamikoSettings
from lofarexec_paramiko.connect import KeyCache
from lofarexec_paramiko.connection import Connection
from lofarexec_paramiko.hosts import KnownHosts, load_ssh_config, resolve_target
from lofarexec_paramiko.jobs import Job
from lofarexec_paramiko.pool import HostPool, close_pools
from lofarexec_ssh import SshBackend, SshSettings

from lofarexec.backend import LaunchRequest
from tests.helpers import Reports

HOSTS = 64
JOBS_PER_HOST = 2

pytestmark = pytest.mark.slow


def alias_config(bed_config: Path, count: int, path: Path) -> Path:
    """An ssh client config naming ``h1..h<count>``, dealt round-robin over the bed's hosts
    (each alias a copy of its host's entry: same address, port, key and known_hosts)."""
    blocks = {}
    for block in bed_config.read_text().split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("Host node"):
            blocks[lines[0].split()[1]] = lines[1:]
    names = sorted(blocks)
    text = []
    for index in range(count):
        text += [f"Host h{index + 1}", *blocks[names[index % len(names)]], ""]
    path.write_text("\n".join(text))
    return path


@pytest.fixture
def aliases(ssh_testbed, tmp_path: Path) -> Path:
    return alias_config(ssh_testbed.ssh_config, HOSTS, tmp_path / "aliases")


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [thread.name for thread in set(threading.enumerate()) - before
            if thread.is_alive() and not thread.name.startswith("Dummy")]
    assert not left, f"threads left running: {left}"


def request(job_id: int, host: str) -> LaunchRequest:
    return LaunchRequest(job_id=job_id, host=host, argv=("/bin/true",), environment={},
                         token="secret")


def run_everywhere(backend: SshBackend | ParamikoBackend) -> Reports:
    """``JOBS_PER_HOST`` jobs on each of the ``HOSTS`` aliases; every report awaited."""
    reports = Reports()
    jobs = [request(number, f"h{number % HOSTS + 1}") for number in range(HOSTS * JOBS_PER_HOST)]
    for job in jobs:
        backend.start(job, reports(job.job_id))
    for job in jobs:
        reports.wait(job.job_id, timeout=120)
    return reports


@pytest.mark.parametrize("backend_class, settings_class",
                         [(SshBackend, SshSettings), (ParamikoBackend, ParamikoSettings)],
                         ids=["ssh", "paramiko"])
def test_sixty_four_hosts_every_job_succeeds(aliases, no_threads_left, backend_class,
                                             settings_class):
    backend = backend_class(settings_class(config_file=str(aliases)))
    backend.open()
    try:
        reports = run_everywhere(backend)
    finally:
        backend.close()
    failed = {key: outcome for key, [outcome, *_] in reports.all.items()
              if outcome.returncode != 0 or outcome.transport_error}
    assert not failed
    assert reports.each_once()
    assert len(reports.all) == HOSTS * JOBS_PER_HOST


def test_many_hosts_close_together(aliases, no_threads_left, monkeypatch):
    """Every host's connection is told to stop before any connection is waited for."""
    settings = ParamikoSettings(config_file=str(aliases))
    config, user = load_ssh_config(settings), getpass.getuser()
    known_hosts, keys = KnownHosts(settings.host_key_policy), KeyCache()
    pools = [HostPool(resolve_target(f"h{index + 1}", settings, config, user), settings,
                      known_hosts, keys) for index in range(HOSTS)]
    reports = Reports()
    for number, pool in enumerate(pools):
        pool.submit(Job(request(number, pool.target.name), None, reports(number)))
    for number in range(HOSTS):
        assert reports.wait(number, timeout=120).returncode == 0

    events: list[tuple[str, str]] = []
    shutdown, join = Connection.shutdown, Connection.join

    def recorded_shutdown(self: Connection) -> None:
        events.append(("stop", self.target.name))
        shutdown(self)

    def recorded_join(self: Connection) -> None:
        join(self)
        events.append(("joined", self.target.name))

    monkeypatch.setattr(Connection, "shutdown", recorded_shutdown)
    monkeypatch.setattr(Connection, "join", recorded_join)
    close_pools(pools)
    stops = [index for index, (what, _) in enumerate(events) if what == "stop"]
    joins = [index for index, (what, _) in enumerate(events) if what == "joined"]
    assert len(stops) == len(joins) == HOSTS
    assert max(stops) < min(joins), "a host was waited for before every host was told to stop"

"""Many hosts from one control node (issue 17): 64 host names on the sshd test bed, every job
succeeding, the hosts' connections closed together rather than one after another, one thread
for all hosts' agents, and hosts beyond a short descriptor budget waiting for a slot."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
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
from lofarexec.transport.agent_pool import AGENT_DESCRIPTORS
from tests.helpers import REPO, Reports

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


#: Runs in a process of its own with the open-files soft limit at 128: 64 hosts of 2 descriptors
#: each cannot all be open at once (with the process's other descriptors). Prints the outcomes
#: and the most ssh clients seen at once.
UNDER_A_LOW_LIMIT = """
import json, os, resource, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from lofarexec_ssh import SshBackend, SshSettings
from lofarexec.backend import LaunchRequest
from lofarexec.transport import descriptor_budget
hosts, per_host = int(sys.argv[2]), int(sys.argv[3])
backend = SshBackend(SshSettings(config_file=sys.argv[1]))
backend.open()
outcomes, done, lock = {}, threading.Event(), threading.Lock()
most = [0]
def children():
    me, count = str(os.getpid()), 0
    try:
        pids = os.listdir("/proc")
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                count += stat.read().rsplit(")", 1)[1].split()[1] == me
        except (OSError, ValueError, IndexError):
            pass
    return count
def report(number):
    def deliver(outcome):
        with lock:
            outcomes[number] = [outcome.returncode, outcome.transport_error]
            most[0] = max(most[0], children())
            if len(outcomes) == hosts * per_host:
                done.set()
    return deliver
for number in range(hosts * per_host):
    request = LaunchRequest(number, f"h{number % hosts + 1}", ("/bin/true",), {}, token="t")
    backend.start(request, report(number))
finished = done.wait(300)
backend.close()
print(json.dumps({"finished": finished, "outcomes": outcomes, "most_clients": most[0],
                  "capacity": descriptor_budget().capacity}))
"""


def test_hosts_beyond_a_short_descriptor_budget_wait_for_a_slot(aliases):
    """64 hosts with the soft limit at 128: every job succeeds, never a descriptor error, and
    at most the budget's worth of hosts have an ssh process at a time."""
    done = subprocess.run([sys.executable, "-c", UNDER_A_LOW_LIMIT, str(aliases), str(HOSTS),
                           str(JOBS_PER_HOST)], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["finished"]
    failed = {number: outcome for number, outcome in result["outcomes"].items()
              if outcome != [0, None]}
    assert failed == {}
    assert len(result["outcomes"]) == HOSTS * JOBS_PER_HOST
    slots = result["capacity"] // AGENT_DESCRIPTORS
    assert slots < HOSTS  # the budget did bite: not every host fits at once
    assert result["most_clients"] <= slots + 4  # the budget's hosts (+ a few short ssh -O)


def test_one_thread_serves_every_hosts_agent(aliases, no_threads_left):
    """Threads O(1) in hosts: with all 64 hosts' agents running, the backend added no more
    than its loop, its chore workers and its process launcher."""
    before = threading.active_count()
    backend = SshBackend(SshSettings(config_file=str(aliases)))
    backend.open()
    try:
        reports = run_everywhere(backend)
        during = threading.active_count()
    finally:
        backend.close()
    assert all(outcome.returncode == 0 for outcome, *_ in reports.all.values())
    assert during - before <= 1 + 4 + 2, threading.enumerate()

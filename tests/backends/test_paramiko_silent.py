"""Hosts that accept TCP and then say nothing (or only their SSH banner), or that stall in
authentication, among hosts that work: a silent host costs its own connect timeout and nothing
else, a stalled one its own auth timeout; the working hosts' jobs are not held up behind them
(issue 17: they once waited for one of 16 set-up threads that such hosts held until their
timeouts)."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lofarexec_paramiko.hub import SETUP_THREADS

from lofarexec.testing.procs import cmdline, descendants
from lofarexec.testing.silenthosts import SilentHosts
from lofarexec.testing.sshbed import SshTestBed
from tests.backends.paramiko_helpers import request
from tests.helpers import Reports

#: More silent hosts than a fixed pool of set-up threads had (16), so that all of them at once
#: would hold every such thread.
SILENT_HOSTS = 20
CONNECT_TIMEOUT = 5.0
#: Long enough for a working host's log-in on a loaded machine, short for the test's length.
AUTH_TIMEOUT = 8.0
WORKING_HOSTS = ("node1", "node2")


@pytest.fixture
def silent_servers() -> Iterator[SilentHosts]:
    servers = SilentHosts(backlog=SILENT_HOSTS)
    yield servers
    servers.close()


class Ends:
    """Each job's outcome by its number, and the order in which hosts' jobs ended."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.reports = Reports()

    def report(self, number: int, host: str):
        deliver = self.reports(number)
        return lambda outcome: (self.order.append(host), deliver(outcome))

    def working_first(self, slow: list[str]) -> bool:
        """Every working host's job ended before the first of ``slow``."""
        return (max(self.order.index(host) for host in WORKING_HOSTS)
                < min(self.order.index(host) for host in slow))


def silent_config(bed_config: Path, servers: SilentHosts, path: Path) -> Path:
    """The bed's ssh config plus ``s1..s<SILENT_HOSTS>`` on the silent ports."""
    path.write_text(bed_config.read_text() + "\n" + servers.ssh_config(SILENT_HOSTS))
    return path


@pytest.mark.slow
def test_silent_hosts_do_not_hold_up_the_working_ones(open_backends, ssh_testbed,
                                                      silent_servers, tmp_path) -> None:
    config = silent_config(ssh_testbed.ssh_config, silent_servers, tmp_path / "ssh_config")
    backend = open_backends(config_file=str(config), connect_timeout=CONNECT_TIMEOUT)
    ends = Ends()
    silent = [f"s{number}" for number in range(1, SILENT_HOSTS + 1)]
    hosts = silent + list(WORKING_HOSTS)  # the silent hosts ask first
    for number, host in enumerate(hosts):
        backend.start(request(number, host, "/bin/true"), ends.report(number, host))
    outcomes = {host: ends.reports.wait(number, timeout=60) for number, host in enumerate(hosts)}

    for host in WORKING_HOSTS:
        assert (outcomes[host].returncode, outcomes[host].transport_error) == (0, None), host
    for host in silent:
        port = silent_servers.port(int(host[1:]))
        assert outcomes[host].transport_error == (
            f"{host}: cannot connect to 127.0.0.1:{port}: timed out"), outcomes[host]
    assert ends.working_first(silent), (
        f"a working host's job ended after a silent host's connect timeout: {ends.order}")


def test_a_refused_port_and_an_unknown_name_are_one_line_each(open_backends, tmp_path) -> None:
    """The dial's own failures (not a timeout): named by host, address and the system's words."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # free again once closed: nothing listens there
    config = tmp_path / "ssh_config"
    config.write_text(f"Host refused\n    HostName 127.0.0.1\n    Port {port}\n\n"
                      "Host nowhere\n    HostName nowhere.invalid\n")
    backend = open_backends(config_file=str(config))
    reports = Reports()
    backend.start(request(1, "refused", "/bin/true"), reports(1))
    backend.start(request(2, "nowhere", "/bin/true"), reports(2))
    assert reports.wait(1).transport_error == (
        f"refused: cannot connect to 127.0.0.1:{port}: Connection refused")
    assert reports.wait(2).transport_error.startswith("nowhere: cannot resolve nowhere.invalid: ")


class StallingAuthBed(SshTestBed):
    """A real sshd that completes the key exchange and then hangs in authentication, as one
    whose key lookup (an ``AuthorizedKeysCommand`` asking a directory server that is down)
    never answers: its lookup is ``sleep``."""

    def _sshd_config(self, host) -> str:
        lines = [line for line in super()._sshd_config(host).splitlines()
                 if not line.startswith("AuthorizedKeysFile")]
        return "\n".join([*lines, "AuthorizedKeysFile none",
                          f"AuthorizedKeysCommand {shutil.which('sleep')} 600",
                          "AuthorizedKeysCommandUser nobody", "LoginGraceTime 60", ""])

    def _wait_ready(self, host) -> None:
        """Up once it says its banner (a log-in, the usual check, would hang)."""
        with socket.create_connection((host.address, host.port), timeout=30) as connection:
            assert connection.makefile("rb").readline().startswith(b"SSH-2.0-")


@pytest.fixture
def stalling_bed(tmp_path) -> Iterator[SshTestBed]:
    bed = StallingAuthBed(tmp_path / "stalling", hosts=1)
    bed.start()
    yield bed
    bed.stop()  # its sshd and the sleeping lookups under it


def lookups_hang_for(bed: SshTestBed, count: int) -> None:
    """Wait until ``count`` log-ins hang in the bed's key lookup (a ``sleep`` under its sshd)."""
    deadline = time.monotonic() + 60  # a hang detector: they come within a second or two
    while len([pid for pid, _ in descendants(bed.pid("node1"))
               if "sleep" in cmdline(pid)]) < count:
        assert time.monotonic() < deadline, f"fewer than {count} log-ins reached the lookup"
        time.sleep(0.02)


@pytest.mark.slow
def test_hosts_stalled_in_authentication_do_not_hold_up_the_working_ones(
        open_backends, ssh_testbed, stalling_bed, tmp_path) -> None:
    """More hosts than set-up threads (16) stall in authentication on a real sshd; once they
    hold every set-up thread, working hosts are asked: their jobs end long before the stalled
    hosts' auth timeout (they waited for it: 8 s here, 15 s by default)."""
    stalled = [f"a{number}" for number in range(1, SILENT_HOSTS + 1)]
    stanza = stalling_bed.ssh_config.read_text().strip().splitlines()[1:]  # under Host node1
    config = tmp_path / "ssh_config"
    config.write_text(ssh_testbed.ssh_config.read_text() + "\n"
                      + "\n".join([f"Host {' '.join(stalled)}", *stanza, ""]))
    backend = open_backends(config_file=str(config), auth_timeout=AUTH_TIMEOUT)
    ends = Ends()
    hosts = stalled + list(WORKING_HOSTS)
    for number, host in enumerate(stalled):
        backend.start(request(number, host, "/bin/true"), ends.report(number, host))
    lookups_hang_for(stalling_bed, SETUP_THREADS)  # every set-up thread is held by now
    for number, host in enumerate(WORKING_HOSTS, start=len(stalled)):
        backend.start(request(number, host, "/bin/true"), ends.report(number, host))
    outcomes = {host: ends.reports.wait(number, timeout=90) for number, host in enumerate(hosts)}

    for host in WORKING_HOSTS:
        assert (outcomes[host].returncode, outcomes[host].transport_error) == (0, None), host
    for host in stalled:
        assert outcomes[host].transport_error is not None, outcomes[host]
        assert outcomes[host].transport_error.startswith(f"{host}: "), outcomes[host]
    assert ends.working_first(stalled), (
        f"a working host's job ended after a stalled host's auth timeout: {ends.order}")

"""Hosts that accept TCP and then say nothing (or only their SSH banner) among hosts that work:
a silent host costs its own connect timeout and nothing else; the working hosts' jobs are not
held up behind it (issue 17: they once waited for one of 16 set-up threads that the silent
hosts held until their timeouts)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lofarexec.testing.silenthosts import SilentHosts
from tests.backends.paramiko_helpers import request
from tests.helpers import Reports

#: More silent hosts than a fixed pool of set-up threads had (16), so that all of them at once
#: would hold every such thread.
SILENT_HOSTS = 20
CONNECT_TIMEOUT = 5.0
WORKING_HOSTS = ("node1", "node2")


@pytest.fixture
def silent_servers() -> Iterator[SilentHosts]:
    servers = SilentHosts(backlog=SILENT_HOSTS)
    yield servers
    servers.close()


def silent_config(bed_config: Path, servers: SilentHosts, path: Path) -> Path:
    """The bed's ssh config plus ``s1..s<SILENT_HOSTS>`` on the silent ports."""
    path.write_text(bed_config.read_text() + "\n" + servers.ssh_config(SILENT_HOSTS))
    return path


@pytest.mark.slow
def test_silent_hosts_do_not_hold_up_the_working_ones(open_backends, ssh_testbed,
                                                      silent_servers, tmp_path) -> None:
    config = silent_config(ssh_testbed.ssh_config, silent_servers, tmp_path / "ssh_config")
    backend = open_backends(config_file=str(config), connect_timeout=CONNECT_TIMEOUT)
    ended: list[str] = []
    reports = Reports()

    def noted(number: int, host: str):
        deliver = reports(number)
        return lambda outcome: (ended.append(host), deliver(outcome))

    silent = [f"s{number}" for number in range(1, SILENT_HOSTS + 1)]
    hosts = silent + list(WORKING_HOSTS)  # the silent hosts ask first
    for number, host in enumerate(hosts):
        backend.start(request(number, host, "/bin/true"), noted(number, host))
    outcomes = {host: reports.wait(number, timeout=60) for number, host in enumerate(hosts)}

    for host in WORKING_HOSTS:
        assert (outcomes[host].returncode, outcomes[host].transport_error) == (0, None), host
    for host in silent:
        port = silent_servers.port(int(host[1:]))
        assert outcomes[host].transport_error == (
            f"{host}: cannot connect to 127.0.0.1:{port}: timed out"), outcomes[host]
    first_silent = min(ended.index(host) for host in silent)
    assert max(ended.index(host) for host in WORKING_HOSTS) < first_silent, (
        f"a working host's job ended after a silent host's connect timeout: {ended}")


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

"""The ssh test bed: real sshd daemons on 127.0.0.2, 127.0.0.3, ... (needs root, openssh-server)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lofarexec.testing import procs
from lofarexec.testing.sshbed import (
    SSHD,
    UNREACHABLE_HOST,
    SshBedError,
    SshTestBed,
    running_testbed,
)
from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd needs root"),
    pytest.mark.skipif(
        not SSHD.exists(), reason="no sshd: run `scripts/sshbed install` (openssh-server)"
    ),
]

SCRIPT = REPO / "scripts" / "sshbed"
SSH_TIMEOUT = 20  # seconds for any one ssh run; a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTestBed]:
    with running_testbed(tmp_path_factory.mktemp("sshbed"), hosts=4) as started:
        yield started


def ssh(
    bed: SshTestBed, name: str, *command: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", str(bed.ssh_config), *options, name, *command]
    return subprocess.run(
        argv,
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=SSH_TIMEOUT,
    )


def gone(pid: int) -> bool:
    return not procs.running(pid)


def listeners_in(directory: Path) -> list[int]:
    """Live sshd processes started with a config of the bed in ``directory``."""
    return [pid for pid in procs.pids_with_cmdline(f"sshd -f {directory}/hosts/") if not gone(pid)]


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants."""
    return {pid, *(child for child, _ in procs.descendants(pid))}


@contextlib.contextmanager
def long_session(bed: SshTestBed, name: str) -> Iterator[subprocess.Popen[str]]:
    """An ssh session to ``name`` that runs until its host dies; killed on the way out."""
    client = subprocess.Popen(
        bed.ssh_command(name, "echo ready; exec sleep 60"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == "ready\n"
        yield client
    finally:
        client.kill()
        client.communicate(timeout=SSH_TIMEOUT)


def test_every_host_logs_in_without_prompt_on_its_own_address(bed: SshTestBed) -> None:
    assert bed.host_names == ["node1", "node2", "node3", "node4"]
    for index, name in enumerate(bed.host_names, start=2):
        assert bed.address(name) == f"127.0.0.{index}"
        result = ssh(bed, name, "echo $SSH_CONNECTION")
        assert (result.returncode, result.stderr) == (0, "")
        server_address, server_port = result.stdout.split()[2:4]
        assert (server_address, int(server_port)) == (bed.address(name), bed.port(name))


def test_known_hosts_names_each_address_and_port(bed: SshTestBed) -> None:
    names = [line.split()[0] for line in bed.known_hosts.read_text().splitlines()]
    expected = [
        bed.address(name) if bed.port(name) == 22 else f"[{bed.address(name)}]:{bed.port(name)}"
        for name in bed.host_names
    ]
    assert names == expected


def test_remote_shell_is_clean_and_runs_the_bed_python(bed: SshTestBed) -> None:
    result = ssh(bed, "node1", f'echo "$HOME"; {bed.python} -c "import sys; print(sys.executable)"')
    assert (result.returncode, result.stderr) == (0, "")  # no pyenv noise from root's ~/.bashrc
    assert result.stdout.splitlines() == [str(bed.directory / "home"), sys.executable]
    assert bed.user == "root" and bed.python == sys.executable


def test_password_login_is_off(bed: SshTestBed) -> None:
    result = ssh(
        bed,
        "node1",
        "true",
        options=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr  # the only method the host offers
    effective = subprocess.run(
        [str(SSHD), "-T", "-f", str(bed.directory / "hosts" / "node1" / "sshd_config")],
        capture_output=True,
        text=True,
        check=True,
        timeout=SSH_TIMEOUT,
    ).stdout.splitlines()
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective


def test_an_unknown_host_key_is_refused(bed: SshTestBed) -> None:
    result = ssh(bed, "node1", "true", options=("-o", "UserKnownHostsFile=/dev/null"))
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_the_unreachable_host_refuses_at_once(bed: SshTestBed) -> None:
    result = ssh(bed, UNREACHABLE_HOST, "true")
    assert result.returncode == 255 and "refused" in result.stderr, result.stderr


def test_a_stopped_host_refuses_while_the_others_work(bed: SshTestBed) -> None:
    listener = bed.pid("node2")
    assert listener is not None
    port = bed.port("node2")
    try:
        with long_session(bed, "node2") as session:
            tree = process_tree(listener)
            bed.stop_host("node2")
            bed.stop_host("node2")  # idempotent
            assert session.wait(timeout=SSH_TIMEOUT) == 255  # its sessions died with it
        assert all(gone(pid) for pid in tree)
        assert not bed.is_running("node2")
        assert ssh(bed, "node2", "true").returncode == 255
        for name in ("node1", "node3", "node4"):
            assert ssh(bed, name, "true").returncode == 0
    finally:
        bed.start_host("node2")
    bed.start_host("node2")  # idempotent
    assert bed.port("node2") == port
    assert ssh(bed, "node2", "true").returncode == 0


def test_forty_concurrent_sessions_all_succeed(bed: SshTestBed) -> None:
    clients = [
        subprocess.Popen(
            bed.ssh_command(name, "true"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
        for name in bed.host_names
    ]
    try:
        results = [client.communicate(timeout=SSH_TIMEOUT) for client in clients]
        assert [client.returncode for client in clients] == [0] * 40, results
    finally:
        for client in clients:
            client.kill()
            client.wait()


def test_stop_leaves_no_process_of_the_bed(bed: SshTestBed, tmp_path: Path) -> None:
    # A second bed on the same addresses: the first holds their ports, so it must probe others.
    second = SshTestBed(tmp_path / "second", hosts=2)
    try:
        second.start()
        assert [second.port(name) != bed.port(name) for name in second.host_names] == [True] * 2
        listeners = [pid for pid in map(second.pid, second.host_names) if pid is not None]
        assert len(listeners) == 2
        with long_session(second, "node1") as session:
            tree = set().union(*map(process_tree, listeners))
            assert len(tree) > 2  # the listeners and node1's session processes
            assert sorted(listeners_in(second.directory)) == sorted(listeners)
            second.stop()
            assert session.wait(timeout=SSH_TIMEOUT) == 255
        assert [pid for pid in tree if not gone(pid)] == []
        assert listeners_in(second.directory) == []
        second.stop()  # idempotent
        assert ssh(second, "node2", "true").returncode == 255
    finally:
        second.stop()


def test_script_brings_a_bed_up_and_down(bed: SshTestBed, tmp_path: Path) -> None:
    directory = tmp_path / "cli"

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    try:
        up = script("up", str(directory), "--hosts", "1")
        assert up.returncode == 0, up.stderr
        cli_bed = SshTestBed.load(directory)
        assert f"ssh -F {cli_bed.ssh_config} node1 true" in up.stdout
        assert ssh(cli_bed, "node1", "true").returncode == 0
        listener = cli_bed.pid("node1")
        assert listener is not None and not gone(listener)
        down = script("down", str(directory))
        assert down.returncode == 0, down.stderr
        assert gone(listener)
    finally:
        with contextlib.suppress(Exception):
            SshTestBed.load(directory).stop()


def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    # nobody's shell, nologin, refuses the readiness check (`ssh node1 true`) after sshd started.
    failing = SshTestBed(tmp_path / "failing", hosts=1, user="nobody")
    try:
        with pytest.raises(SshBedError, match="node1: `ssh -F .* node1 true` exited"):
            failing.start()
        assert not failing.is_running("node1")
        assert listeners_in(failing.directory) == []
    finally:
        failing.stop()

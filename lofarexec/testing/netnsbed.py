"""Hosts in network namespaces, for faults loopback cannot make: a link pulled, a frozen host.

A bed of N hosts is N + 1 namespaces this process creates and removes::

    root namespace        blackhole route 10.200.0.0/24 (a client run in the wrong namespace
                          fails here instead of following the default route off the machine)
    CTL  lxb<pid>c        bridge br0 10.200.0.1/24; veth h1..hN, one end of each host's cable
    HOST lxb<pid>h<N>     eth0 10.200.0.<N+1>/24, the other end; one sshd on port 22

The control side (a recipe: its ssh clients and its log server on 10.200.0.1) runs in CTL,
through :meth:`NetnsBed.controller_command`. The hosts share this machine's file system and
process table, so a host's processes are "what runs in its namespace" (``ip netns pids``).
Keys, sshd configs and the client config are written by :mod:`lofarexec.testing.sshbed_files`,
as for the loopback bed; the client config's host names are ``node1``.. ``nodeN``.

Namespaces left by a process that died before its teardown (their names hold its pid) are
removed by the next bed that starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lofarexec.testing.procs import running, start_time, wait_gone
from lofarexec.testing.sshbed_files import (
    SSHD,
    SshBedError,
    SshHost,
    log_tail,
    make_key,
    sshd_config,
    write_client_files,
)

__all__ = ["CONTROLLER_ADDRESS", "NetnsBed", "NetnsBedError", "netns_problem", "running_netnsbed"]

SUBNET = "10.200.0.0/24"
CONTROLLER_ADDRESS = "10.200.0.1"
PREFIX = "lxb"
START_TIMEOUT = 10.0  # seconds for one sshd to accept a login
KILL_TIMEOUT = 5.0


class NetnsBedError(SshBedError):
    """The namespace bed could not be set up or removed; the message says what failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL, timeout=30)
    if check and result.returncode != 0:
        raise NetnsBedError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def netns_problem() -> str | None:
    """Why no bed can be made here (a line for a skip), or None when ``ip netns add`` works."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` program: apt-get install -y iproute2"
    if not SSHD.exists():
        return f"no {SSHD}: apt-get install -y openssh-server"
    probe = f"{PREFIX}{os.getpid()}probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is impossible here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def namespace_pids(namespace: str) -> list[int]:
    """The pids of every process in ``namespace`` (empty once it is gone)."""
    result = _ip("netns", "pids", namespace, check=False)
    return [int(word) for word in result.stdout.split()]


class NetnsBed:
    """``hosts`` ssh hosts ``node1``.. in namespaces of their own, a controller namespace to run
    clients in; files in ``directory``. A context manager; :meth:`stop` is safe to call twice."""

    def __init__(self, directory: Path | str, hosts: int = 2, tag: str = "") -> None:
        """``tag`` (lower-case letters) tells apart two beds of one process."""
        if not 1 <= hosts <= 200:
            raise ValueError(f"hosts must be between 1 and 200, not {hosts}")
        if not re.fullmatch("[a-z]{0,3}", tag):
            raise ValueError(f"tag must be up to 3 lower-case letters, not {tag!r}")
        self.directory = Path(directory).resolve()
        tag = f"{PREFIX}{os.getpid()}{tag}"
        self.controller = f"{tag}c"
        self._namespaces = {f"node{n}": f"{tag}h{n}" for n in range(1, hosts + 1)}
        self._hosts = {
            name: SshHost(name=name, address=f"10.200.0.{n + 1}", port=22,
                          folder=self.directory / "hosts" / name)
            for n, name in enumerate(self._namespaces, start=1)
        }
        self._added_blackhole = False

    # -- what tests use ------------------------------------------------------------------------

    @property
    def host_names(self) -> list[str]:
        return list(self._hosts)

    @property
    def ssh_config(self) -> Path:
        return self.directory / "client" / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "client" / "known_hosts"

    def address(self, name: str) -> str:
        return self._host(name).address

    def namespace(self, name: str) -> str:
        self._host(name)
        return self._namespaces[name]

    def controller_command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in the controller namespace: pass it to ``subprocess.Popen``; the
        process is the command itself (``ip netns exec`` execs it), so signals reach it."""
        return ["ip", "netns", "exec", self.controller, *argv]

    def ssh_command(self, name: str, *command: str) -> list[str]:
        return self.controller_command(["ssh", "-F", str(self.ssh_config), name, *command])

    def host_pids(self, name: str) -> list[int]:
        """Every process on host ``name``: its sshd listener, sessions and jobs."""
        return namespace_pids(self.namespace(name))

    def listener_pid(self, name: str) -> int | None:
        """The pid of host ``name``'s listening sshd; None while it is stopped."""
        return self._host(name).pid

    def pull_link(self, name: str) -> None:
        """Pull host ``name``'s cable: its packets go nowhere, nothing tells either side."""
        _ip("-n", self.controller, "link", "set", self._veth(name), "down")

    def restore_link(self, name: str) -> None:
        _ip("-n", self.controller, "link", "set", self._veth(name), "up")

    def stop_sshd(self, name: str) -> None:
        """Crash host ``name``: every process in its namespace is SIGKILLed."""
        host = self._host(name)
        kill_namespace(self._namespaces[name])
        host.pid = host.start_time = None

    def start_sshd(self, name: str) -> None:
        """Start (or restart) host ``name``'s sshd and wait until it accepts a login."""
        host = self._host(name)
        if host.pid is not None and running(host.pid):
            return
        host.pid_file.unlink(missing_ok=True)
        command = ["ip", "netns", "exec", self._namespaces[name], str(SSHD),
                   "-f", str(host.config), "-E", str(host.log_file)]
        started = subprocess.run(command, capture_output=True, text=True, check=False,
                                 stdin=subprocess.DEVNULL, timeout=START_TIMEOUT)
        if started.returncode != 0:
            raise NetnsBedError(f"{name}: sshd did not start: {started.stderr.strip()} "
                                f"{log_tail(host.log_file)}")
        self._await_login(host)

    def freeze(self, name: str) -> None:
        """Host ``name`` hangs: every process on it is SIGSTOPped. Its kernel still completes
        TCP handshakes, so sshd accepts connections and never answers."""
        for pid in self.host_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        for pid in self.host_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the namespaces, cables and daemons; on failure remove what was made."""
        remove_stale_namespaces()
        try:
            self._write_files()
            self._make_network()
            for name in self._hosts:
                self.start_sshd(name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every process in the bed's namespaces, remove them and the blackhole route."""
        for namespace in [*self._namespaces.values(), self.controller]:
            kill_namespace(namespace)
            _ip("netns", "del", namespace, check=False)
        for host in self._hosts.values():
            host.pid = host.start_time = None
        if self._added_blackhole:
            _ip("route", "del", "blackhole", SUBNET, check=False)
            self._added_blackhole = False

    def __enter__(self) -> NetnsBed:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- set-up --------------------------------------------------------------------------------

    def _host(self, name: str) -> SshHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in this bed; hosts: {', '.join(self._hosts)}"
                           ) from None

    def _veth(self, name: str) -> str:
        return f"h{name.removeprefix('node')}"

    def _write_files(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # sshd's privsep
        identity = self.directory / "client" / "id_ed25519"
        for folder in (self.directory / "home", identity.parent):
            folder.mkdir(parents=True, exist_ok=True)
        make_key(identity)
        authorized = self.directory / "authorized_keys"
        authorized.write_text(identity.with_suffix(".pub").read_text())
        authorized.chmod(0o644)
        for host in self._hosts.values():
            host.folder.mkdir(parents=True, exist_ok=True)
            make_key(host.key)
            host.config.write_text(sshd_config(host, self.directory, self.directory / "home"))
        write_client_files(self._hosts.values(), user="root", identity_file=identity,
                           known_hosts=self.known_hosts, ssh_config=self.ssh_config)

    def _make_network(self) -> None:
        if _ip("route", "show", "type", "blackhole", SUBNET).stdout.strip() == "":
            _ip("route", "replace", "blackhole", SUBNET)
            self._added_blackhole = True
        ctl = self.controller
        _ip("netns", "add", ctl)
        _ip("-n", ctl, "link", "set", "lo", "up")
        _ip("-n", ctl, "link", "add", "br0", "type", "bridge")
        _ip("-n", ctl, "addr", "add", f"{CONTROLLER_ADDRESS}/24", "dev", "br0")
        _ip("-n", ctl, "link", "set", "br0", "up")
        for name, namespace in self._namespaces.items():
            veth = self._veth(name)
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("link", "add", "eth0", "netns", namespace, "type", "veth",
                "peer", "name", veth, "netns", ctl)
            _ip("-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", ctl, "link", "set", veth, "master", "br0")
            _ip("-n", ctl, "link", "set", veth, "up")

    def _await_login(self, host: SshHost) -> None:
        """Wait until ``ssh node true`` works from the controller; keep the listener's pid."""
        for _ in range(int(START_TIMEOUT / 0.05)):  # sshd writes it once it listens
            with contextlib.suppress(OSError, ValueError):
                pid = int(host.pid_file.read_text())
                host.pid, host.start_time = pid, start_time(pid)
                break
            time.sleep(0.05)
        else:
            raise NetnsBedError(f"{host.name}: sshd wrote no {host.pid_file}; "
                                f"{log_tail(host.log_file)}")
        login = subprocess.run(self.ssh_command(host.name, "true"), capture_output=True,
                               text=True, check=False, stdin=subprocess.DEVNULL,
                               timeout=START_TIMEOUT)
        if login.returncode != 0:
            raise NetnsBedError(f"{host.name}: ssh from the controller failed: "
                                f"{login.stderr.strip()} {log_tail(host.log_file)}")



def kill_namespace(namespace: str) -> None:
    """SIGKILL every process in ``namespace`` and wait until they are gone."""
    pids = namespace_pids(namespace)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids and not wait_gone(pids, KILL_TIMEOUT):
        raise NetnsBedError(f"processes {pids} in {namespace} survived SIGKILL")


def remove_stale_namespaces() -> None:
    """Remove the namespaces of beds whose process is gone (killed before its teardown)."""
    listed = _ip("netns", "list", check=False).stdout
    for namespace in re.findall(rf"^({PREFIX}(\d+)[a-z]*(?:c|h\d+))\b", listed, re.MULTILINE):
        name, pid = namespace
        if int(pid) != os.getpid() and not running(int(pid)):
            with contextlib.suppress(NetnsBedError):
                kill_namespace(name)
            _ip("netns", "del", name, check=False)


@contextlib.contextmanager
def running_netnsbed(directory: Path | str, hosts: int = 2) -> Iterator[NetnsBed]:
    """A started :class:`NetnsBed`, removed on the way out whatever happened."""
    with NetnsBed(directory, hosts) as bed:
        yield bed

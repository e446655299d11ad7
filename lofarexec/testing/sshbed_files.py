"""What the ssh test bed needs on disk: the sshd program, keys, each host's ``sshd_config``,
the client's config.

:mod:`lofarexec.testing.sshbed` starts and stops the daemons; this module writes what they and
their clients read. See that module's docstring for the bed folder's layout and for why the
hosts' sessions get a HOME of their own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
#: A name in the client config that nothing answers (127.0.0.1, port 1): a host that cannot be
#: reached, for tests of failed connections.
UNREACHABLE_HOST = "unreachable"
_UNREACHABLE_ADDRESS = ("127.0.0.1", 1)


class SshBedError(RuntimeError):
    """The test bed could not be set up, started or stopped; the message says what to do."""


def ensure_openssh_installed() -> None:
    """Install Debian's ``openssh-server`` if ``/usr/sbin/sshd`` is missing (needs root).

    Runs ``apt-get update`` and tries again when the first install fails (a stale package list).
    The package's own daemon is not started in a container (policy-rc.d); the bed never uses it.
    """
    if SSHD.exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "openssh-server"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not SSHD.exists():
        raise SshBedError(f"openssh-server is installed but {SSHD} is still missing")


@dataclass
class SshHost:
    """One host of the bed: its address and folder, and its daemon once started."""

    name: str
    address: str
    folder: Path
    port: int = 0
    pid: int | None = None
    start_time: int | None = None

    @property
    def config(self) -> Path:
        return self.folder / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.folder / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / "sshd.log"

    @property
    def key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def sshd_config(host: SshHost, directory: Path, home: Path | None) -> str:
    """The daemon config of ``host`` in the bed ``directory``; ``home``: the sessions' HOME
    (None keeps the user's own)."""
    lines = [
        f"# {host.name} of the lofarexec ssh test bed in {directory}",
        f"Port {host.port}",
        f"ListenAddress {host.address}:{host.port}",
        "AddressFamily inet",
        f"HostKey {quote(host.key)}",
        f"PidFile {quote(host.pid_file)}",
        f"AuthorizedKeysFile {quote(directory / 'authorized_keys')}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",  # keys under /tmp: sshd rejects that folder's modes otherwise
        "MaxStartups 200",  # the defaults (10:30:100, 10) drop or refuse a fan-out
        "MaxSessions 100",
        "PermitUserRC no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]
    if home is not None:  # root's ~/.bashrc runs pyenv init: see the sshbed module docstring
        lines.append(f"SetEnv {quote(f'HOME={home}')}")
    return "\n".join(lines) + "\n"


def write_client_files(hosts: Iterable[SshHost], *, user: str, identity_file: Path,
                       known_hosts: Path, ssh_config: Path) -> None:
    """Write ``known_hosts`` (one line per host) and ``ssh_config`` (one entry per host, and
    :data:`UNREACHABLE_HOST`)."""
    known, config = [], []
    unreachable = SshHost(UNREACHABLE_HOST, _UNREACHABLE_ADDRESS[0], Path(),
                          port=_UNREACHABLE_ADDRESS[1])
    for host in [*hosts, unreachable]:
        if host is not unreachable:
            key_type, key = host.key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"{host.known_hosts_name} {key_type} {key}\n")
        config += [
            f"Host {host.name}",
            f"    HostName {host.address}",
            f"    Port {host.port}",
            f"    User {user}",
            f"    IdentityFile {quote(identity_file)}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {quote(known_hosts)}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    UpdateHostKeys no",
            # sntrup761, the default key exchange of OpenSSH 9, costs ~70 ms of CPU per fresh
            # session here; the test hosts need no post-quantum secrecy.
            "    KexAlgorithms ^curve25519-sha256",
            "    BatchMode yes",
            "    ConnectTimeout 10",
            "    LogLevel ERROR",
            "",
        ]
    known_hosts.write_text("".join(known))
    ssh_config.write_text("\n".join(config))


def make_key(path: Path) -> None:
    """An ed25519 key pair at ``path`` (and ``.pub``), unless both files are there."""
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lofarexec-sshbed", "-f", str(path)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def free_port(address: str, preferred: int) -> int | None:
    """``preferred`` if it can be bound on ``address`` now, else a free port the kernel picks;
    None when there is none."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd binds
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    return None


def quote(value: object) -> str:
    """A value for an ssh config line: in double quotes when it holds white space."""
    text = str(value)
    return f'"{text}"' if any(char.isspace() for char in text) else text


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a daemon's log, for an error message."""
    with contextlib.suppress(OSError):
        last = path.read_text(errors="replace").splitlines()[-lines:]
        if last:
            return f"(log {path}: {' | '.join(last)})"
    return f"(log {path} is empty)"

"""Real ssh "hosts" on this machine for tests: one OpenSSH ``sshd`` per loopback address.

A bed of N hosts runs N daemons, ``node1`` on 127.0.0.2, ``node2`` on 127.0.0.3, ... each on
port 22, or on a free port where 22 is taken on that address. Each daemon is its own process, so
one host can be failed (:meth:`SshTestBed.stop_host`, which kills its sessions too, as a crash
would) and restored (:meth:`SshTestBed.start_host`) while the others carry on. Clients use the
generated config: ``ssh -F DIR/client/ssh_config node1 true`` logs in with no prompt. Nothing
outside 127.0.0.0/8 is ever addressed. Layout of the bed folder ``DIR``::

    DIR/sshbed.json                 state: address, port, pid of every host (read by ``down``)
    DIR/authorized_keys             the client key, for every host
    DIR/home/                       the remote sessions' HOME (see below)
    DIR/client/id_ed25519           the client key
    DIR/client/known_hosts          one line per host, checked strictly
    DIR/client/ssh_config           Host node1 / HostName 127.0.0.2 / Port / User / ...,
                                    and Host unreachable (127.0.0.1 port 1: nothing answers)
    DIR/hosts/nodeN/                host key, sshd_config, sshd.pid, sshd.log (LogLevel VERBOSE)

Which user the hosts log in as
------------------------------
The default is the user running the bed (root, when tests run as root), NOT a dedicated account.
A dedicated user was considered and rejected: the interpreter the hosts must run,
``sys.executable``, lives under ``/root/.pyenv`` and ``/root`` is mode 0700, so another user
cannot even reach it; pytest's temporary folders are 0700 too. What a dedicated user would buy -
a remote shell that does not run root's ``~/.bashrc`` (``pyenv init``: 70-120 ms per session,
and a different ``python3``) - is had without touching root's account: each sshd sets the
session's ``HOME`` to the empty ``DIR/home`` (``SetEnv HOME=...``, which sshd applies after its
own ``HOME``), so ``bash -c COMMAND`` finds no ``~/.bashrc`` to run. ``PermitUserRC no`` skips
``~/.ssh/rc`` as well. The client config also puts ``curve25519-sha256`` first among the key
exchanges: OpenSSH 9's default, sntrup761, costs about 70 ms of CPU per fresh session here. The
working folder of a session is still root's home: remote commands
should use absolute paths, and :attr:`SshTestBed.python` to start Python. Another existing
account can be named with ``user=``; its own home is left as its HOME, and it must be able to
read ``DIR``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lofarexec.testing.procs import DaemonBed, ProcId, cmdline, kill_tree, pids_with_cmdline
from lofarexec.testing.procs import alive as _alive
from lofarexec.testing.procs import start_time as _start_time
from lofarexec.testing.sshbed_files import (
    SSHD,
    UNREACHABLE_HOST,
    SshBedError,
    SshHost,
    ensure_openssh_installed,
    free_port,
    log_tail,
    make_key,
    sshd_config,
    write_client_files,
)

__all__ = [
    "SSHD",
    "UNREACHABLE_HOST",
    "SshBedError",
    "SshTestBed",
    "ensure_openssh_installed",
    "running_testbed",
]

PRIVSEP_FOLDER = Path("/run/sshd")  # sshd refuses to start without it
STATE_FILE = "sshbed.json"
FIRST_OCTET = 2  # node1 is 127.0.0.2: 127.0.0.1 is left to whatever else runs here
START_TIMEOUT = 10.0  # seconds for one sshd to listen and accept a login
KILL_TIMEOUT = 5.0  # seconds for killed processes to disappear


class SshTestBed(DaemonBed):
    """``hosts`` sshd daemons on 127.0.0.2, 127.0.0.3, ..., client config in ``directory``.

    ``start()`` and ``stop()`` are idempotent; the bed is also a context manager. The state is
    kept in ``directory/sshbed.json``, so :meth:`load` can stop a bed another process started.
    """

    STATE_FILE = STATE_FILE
    Error = SshBedError

    def __init__(self, directory: Path | str, hosts: int = 4, user: str | None = None) -> None:
        if not 1 <= hosts <= 255 - FIRST_OCTET:
            raise ValueError(f"hosts must be between 1 and {255 - FIRST_OCTET}, not {hosts}")
        self.directory = Path(directory).resolve()
        if any(char in str(self.directory) for char in '"%\n'):
            raise ValueError(f"{self.directory}: a bed folder may not contain '\"', '%' or newline")
        self._user = user or pwd.getpwuid(os.getuid()).pw_name
        self._clean_home = True  # set for real by _prepare, from the user's uid
        self._hosts = {
            f"node{index}": SshHost(
                name=f"node{index}",
                address=f"127.0.0.{FIRST_OCTET + index - 1}",
                folder=self.directory / "hosts" / f"node{index}",
            )
            for index in range(1, hosts + 1)
        }

    # -- what tests and clients use ------------------------------------------------------------

    @property
    def host_names(self) -> list[str]:
        return list(self._hosts)

    def address(self, name: str) -> str:
        return self._host(name).address

    def port(self, name: str) -> int:
        return self._host(name).port

    @property
    def ssh_config(self) -> Path:
        return self.directory / "client" / "ssh_config"

    @property
    def identity_file(self) -> Path:
        return self.directory / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "client" / "known_hosts"

    @property
    def user(self) -> str:
        return self._user

    @property
    def python(self) -> str:
        """Absolute path of an interpreter the hosts can run (the one running the bed)."""
        return sys.executable

    def pid(self, name: str) -> int | None:
        """The pid of the host's listening sshd, None while the host is stopped."""
        return self._host(name).pid

    def ssh_command(self, name: str, *command: str) -> list[str]:
        """``ssh -F CONFIG NAME COMMAND...`` as an argument list."""
        return ["ssh", "-F", str(self.ssh_config), name, *command]

    def is_running(self, name: str) -> bool:
        host = self._host(name)
        return host.pid is not None and _alive((host.pid, host.start_time or 0))

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Generate keys and configs, start every host that is not running, wait until each
        accepts a login. On failure everything started is stopped again."""
        if all(self.is_running(name) for name in self._hosts):
            return
        if all(host.pid is None for host in self._hosts.values()):
            self._stop_leftovers()
        self._prepare()
        try:
            for host in self._hosts.values():
                if not self.is_running(host.name):
                    self._launch(host)
            for host in self._hosts.values():
                self._wait_ready(host)
        except BaseException as error:
            try:
                self.stop()
            except SshBedError as stop_error:
                error.add_note(f"and stopping the bed failed too: {stop_error}")
            raise
        self._save_state()

    def stop(self) -> None:
        """Kill every host's sshd and its sessions; safe to call twice."""
        errors = []
        for name in self._hosts:
            try:
                self.stop_host(name)
            except SshBedError as error:
                errors.append(str(error))
        if errors:
            raise SshBedError("; ".join(errors))

    def stop_host(self, name: str) -> None:
        """Fail one host as a crash would: its listener and every session on it are killed."""
        host = self._host(name)
        if host.pid is not None:
            _kill_tree((host.pid, host.start_time or 0))
            host.pid = host.start_time = None
            host.pid_file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the folder may be gone already: kill anyway
                self._save_state()

    def start_host(self, name: str) -> None:
        """Restore a stopped host on its old address, port and key."""
        host = self._host(name)
        if self.is_running(name):
            return
        if not host.config.exists():
            raise SshBedError(f"{name} was never set up: call start() first")
        self._launch(host)
        try:
            self._wait_ready(host)
        except BaseException as error:
            try:
                self.stop_host(name)
            except SshBedError as stop_error:
                error.add_note(f"and stopping {name} failed too: {stop_error}")
            raise
        self._save_state()

    @classmethod
    def load(cls, directory: Path | str) -> SshTestBed:
        """The bed whose state is in ``directory`` (started by this or another process)."""
        state = cls.read_state(directory)
        bed = cls(directory, hosts=len(state["hosts"]), user=state["user"])
        for saved in state["hosts"]:
            host = bed._host(saved["name"])
            host.port, host.pid, host.start_time = saved["port"], saved["pid"], saved["start_time"]
        return bed

    # -- set-up ----------------------------------------------------------------------------------

    def _host(self, name: str) -> SshHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(
                f"no host {name!r} in this bed; hosts: {', '.join(self._hosts)}"
            ) from None

    def _stop_leftovers(self) -> None:
        """A bed folder holds one bed: stop what an earlier process left running from it,
        before its configs are rewritten and its ports probed again."""
        if (self.directory / STATE_FILE).exists():
            with contextlib.suppress(SshBedError, KeyError):
                SshTestBed.load(self.directory).stop()

    def _prepare(self) -> None:
        if not SSHD.exists():
            raise SshBedError(f"{SSHD} is missing: run `apt-get install -y openssh-server`")
        try:
            self._clean_home = pwd.getpwnam(self._user).pw_uid == 0
        except KeyError:
            raise SshBedError(
                f"user {self._user!r} does not exist: create it (useradd -m -s /bin/sh "
                f"{self._user}) or leave user unset"
            ) from None
        PRIVSEP_FOLDER.mkdir(mode=0o755, parents=True, exist_ok=True)
        for folder in (self.directory / "home", self.identity_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        make_key(self.identity_file)
        authorized = self.directory / "authorized_keys"
        authorized.write_text(self.identity_file.with_suffix(".pub").read_text())
        authorized.chmod(0o644)  # sshd reads it as the logged-in user
        for host in self._hosts.values():
            host.folder.mkdir(parents=True, exist_ok=True)
            make_key(host.key)
            if not self.is_running(host.name):
                host.port = _free_port(host.address, preferred=host.port or 22)
            host.config.write_text(self._sshd_config(host))
        self._write_client_files()

    def _sshd_config(self, host: SshHost) -> str:
        return sshd_config(host, self.directory,
                           self.directory / "home" if self._clean_home else None)

    def _write_client_files(self) -> None:
        write_client_files(self._hosts.values(), user=self._user,
                           identity_file=self.identity_file, known_hosts=self.known_hosts,
                           ssh_config=self.ssh_config)

    # -- processes -------------------------------------------------------------------------------

    def _launch(self, host: SshHost) -> None:
        """Start one sshd. Its first process exits 0 once it has forked the daemon, BEFORE the
        daemon binds its port; the daemon writes its PidFile once it listens. Another process
        may take the probed port before the daemon binds it: then probe again, once."""
        command = [str(SSHD), "-f", str(host.config), "-E", str(host.log_file)]
        for attempt in range(2):
            log_offset = host.log_file.stat().st_size if host.log_file.exists() else 0
            host.pid_file.unlink(missing_ok=True)
            result = subprocess.run(
                command,
                check=False,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=START_TIMEOUT,
            )
            if result.returncode == 0 and self._await_pid_file(host):
                return
            with host.log_file.open(errors="replace") as log:
                log.seek(log_offset)
                why = f"{result.stderr} {log.read()}".strip()
            if attempt or "Address already in use" not in why:
                raise SshBedError(f"{host.name}: {' '.join(command)} failed: {why}")
            host.port = _free_port(host.address, preferred=host.port)
            host.config.write_text(self._sshd_config(host))
            self._write_client_files()

    def _await_pid_file(self, host: SshHost) -> bool:
        """True once the daemon listens (its PidFile names it), False if it died first."""
        marker = f"-f {host.config} "
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                pid = int(host.pid_file.read_text())
                start_time = _start_time(pid)
                if start_time is not None and marker in cmdline(pid):
                    host.pid, host.start_time = pid, start_time
                    return True
            if not pids_with_cmdline(marker):
                return False
            time.sleep(0.01)
        raise SshBedError(f"{host.name}: sshd wrote no {host.pid_file} in {START_TIMEOUT} s")

    def _wait_ready(self, host: SshHost) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection((host.address, host.port), timeout=1.0).close()
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    raise SshBedError(
                        f"{host.name}: nothing accepts on {host.address}:{host.port} ({error}); "
                        f"{log_tail(host.log_file)}"
                    ) from error
                time.sleep(0.02)
        login = subprocess.run(
            self.ssh_command(host.name, "true"),
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=START_TIMEOUT,
        )
        if login.returncode != 0:
            raise SshBedError(
                f"{host.name}: `ssh -F {self.ssh_config} {host.name} true` exited "
                f"{login.returncode}: {login.stderr.strip()} {log_tail(host.log_file)}"
            )

    def _save_state(self) -> None:
        state = {
            "user": self._user,
            "ssh_config": str(self.ssh_config),
            "hosts": [
                {
                    "name": host.name,
                    "address": host.address,
                    "port": host.port,
                    "pid": host.pid,
                    "start_time": host.start_time,
                }
                for host in self._hosts.values()
            ],
        }
        self.write_state(state)


@contextlib.contextmanager
def running_testbed(
    directory: Path | str, hosts: int = 4, user: str | None = None
) -> Iterator[SshTestBed]:
    """A started :class:`SshTestBed`, stopped on the way out whatever happened; wrap it in a
    fixture: ``with running_testbed(tmp_path_factory.mktemp("ssh")) as bed: yield bed``."""
    with SshTestBed(directory, hosts=hosts, user=user) as bed:
        yield bed


# -- helpers -------------------------------------------------------------------------------------


def _free_port(address: str, preferred: int) -> int:
    port = free_port(address, preferred)
    if port is None:
        raise SshBedError(f"no free TCP port on {address}")
    return port


def _kill_tree(root: ProcId) -> None:
    left = kill_tree(root, KILL_TIMEOUT)
    if left:
        raise SshBedError(f"sshd processes {left} survived SIGKILL for {KILL_TIMEOUT} s")

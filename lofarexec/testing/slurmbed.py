"""A real Slurm cluster on this machine for tests: munged, slurmctld and one slurmd per node.

Debian's ``slurm-wlm`` and ``munge``, started without systemd. A bed of N nodes runs one
``munged`` (as the ``munge`` user), one ``slurmctld`` and N ``slurmd`` daemons, each started
with ``-N nK`` as fake node ``nK``: every node is this machine, but each has its own daemon,
spool folder and port, so ``srun -w n3`` lands on n3's daemon and the contract suite gets four
"hosts". Clients find the cluster through ``SLURM_CONF`` (:attr:`SlurmTestBed.environment`).
Layout of the bed folder ``DIR``::

    DIR/slurmbed.json        state: pid and start time of every daemon, ports (read by ``down``)
    DIR/slurm.conf           the cluster's config (``slurmbed_files.slurm_conf_text`` says why)
    DIR/state/               slurmctld's StateSaveLocation
    DIR/spool/nK/            slurmd's spool folder of node nK
    DIR/log/                 slurmctld.log, slurmd-nK.log (daemons run with their cwd here)
    DIR/run/                 pid files

munge's own files live in ``/run/lofarexec-slurmbed/<hash of DIR>/``, not in ``DIR``: munged
runs as the ``munge`` user and refuses folders it cannot enter or that others may write, and
pytest's temporary folders are 0700 root. That folder holds a key made for this bed, the socket
(named in slurm.conf as ``AuthInfo=socket=...``, so a system munged is neither needed nor
touched), the pid, seed and log files.

Every process the bed starts carries ``LOFAREXEC_SLURMBED=DIR`` in its environment; so do the
``slurmstepd`` processes the slurmd daemons fork. :meth:`SlurmTestBed.stop` cancels every job,
stops each daemon by its recorded pid (checked against its start time, so a reused pid is never
hit), then kills whatever still carries the mark: nothing of the bed is left running, also after
a start that failed half-way. Everything listens on 127.0.0.1 only: the controller and every
node are addressed there, and ``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny`` keeps the
daemons and srun from binding the wildcard address.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from lofarexec.testing.procs import DaemonBed, ProcId
from lofarexec.testing.procs import alive as _alive
from lofarexec.testing.procs import send_signal as _signal
from lofarexec.testing.procs import start_time as _start_time
from lofarexec.testing.slurmbed_files import (
    MUNGE_USER,
    SlurmBedError,
    ensure_slurm_installed,
    munged_argv,
    prepare_munge,
    slurm_conf_text,
    slurm_missing,
)

__all__ = [
    "SlurmBedError",
    "SlurmTestBed",
    "ensure_slurm_installed",
    "slurm_missing",
]

MUNGE_ROOT = Path("/run/lofarexec-slurmbed")
STATE_FILE = "slurmbed.json"
MARK = "LOFAREXEC_SLURMBED"
START_TIMEOUT = 30.0  # seconds for the daemons to start and every node to be idle
STOP_TIMEOUT = 10.0  # seconds for jobs to be cancelled and daemons to exit
MAX_DIRECTORY = 70  # slurmd's step sockets live in DIR/spool/nK/: a socket path has 107 bytes


class SlurmTestBed(DaemonBed):
    """``nodes`` fake Slurm nodes n1..nN on this machine, configured in ``directory``.

    ``start()`` and ``stop()`` are idempotent; the bed is also a context manager. The state is
    kept in ``directory/slurmbed.json``, so :meth:`load` can stop a bed another process started.
    """

    STATE_FILE = STATE_FILE
    Error = SlurmBedError

    def __init__(self, directory: Path | str, nodes: int = 4, cpus: int = 8) -> None:
        if not 1 <= nodes <= 64:
            raise ValueError(f"nodes must be between 1 and 64, not {nodes}")
        self.directory = Path(directory).resolve()
        if len(str(self.directory)) > MAX_DIRECTORY:
            raise ValueError(f"{self.directory}: a bed folder path may have {MAX_DIRECTORY} "
                             "characters at most (slurmd's socket paths grow from it)")
        if any(char.isspace() or char in "#%\"'" for char in str(self.directory)):
            raise ValueError(f"{self.directory}: slurm.conf cannot name a folder with spaces, "
                             "quotes, '#' or '%'")
        self.node_names = [f"n{index}" for index in range(1, nodes + 1)]
        self.cpus = cpus
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        self.munge_folder = MUNGE_ROOT / digest
        self.ports: dict[str, int] = {}
        self.processes: dict[str, ProcId] = {}

    # -- what tests and clients use ------------------------------------------------------------

    @property
    def slurm_conf(self) -> Path:
        return self.directory / "slurm.conf"

    @property
    def environment(self) -> dict[str, str]:
        """What a client (srun, sinfo, ...) needs in its environment to reach this cluster."""
        return {"SLURM_CONF": str(self.slurm_conf)}

    def is_running(self) -> bool:
        """True while every daemon of the bed runs."""
        names = ["munged", "slurmctld", *(f"slurmd-{node}" for node in self.node_names)]
        return all(name in self.processes and _alive(self.processes[name]) for name in names)

    def client(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``squeue``, ``scancel``, ...) against this cluster."""
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**os.environ, **self.environment}, timeout=timeout,
                              check=False)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the configs, start every daemon, wait until every node is idle.

        On failure everything started is stopped again and the error names the daemon's log.
        """
        if self.is_running():
            return
        problem = slurm_missing()
        if problem:
            raise SlurmBedError(problem)
        self.stop()  # a half-started bed, or one left by a dead process: start afresh
        try:
            self._prepare()
            self._launch("munged", munged_argv(self.munge_folder),
                         self.munge_folder / "run" / "munged.pid", user=MUNGE_USER)
            self._launch("slurmctld", ["/usr/sbin/slurmctld", "-f", str(self.slurm_conf), "-c"],
                         self._run / "slurmctld.pid")
            for node in self.node_names:
                self._launch(f"slurmd-{node}",
                             ["/usr/sbin/slurmd", "-f", str(self.slurm_conf), "-N", node],
                             self._run / f"slurmd-{node}.pid")
            self._save_state()
            self._wait_idle()
        except BaseException as error:
            try:
                self.stop()
            except SlurmBedError as stop_error:
                error.add_note(f"and stopping the bed failed too: {stop_error}")
            raise

    def stop(self) -> None:
        """Cancel every job, stop every daemon and kill anything left with the bed's mark."""
        if "slurmctld" in self.processes and _alive(self.processes["slurmctld"]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._cancel_all_jobs()
        order = [f"slurmd-{node}" for node in self.node_names] + ["slurmctld", "munged"]
        for name in order:
            if name in self.processes:
                _terminate([self.processes[name]])
        _terminate(_marked_processes(str(self.directory)), signal.SIGKILL)
        self.processes.clear()
        shutil.rmtree(self.munge_folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last bed gone: leave /run as found
            MUNGE_ROOT.rmdir()
        with contextlib.suppress(OSError):
            self._save_state()

    @classmethod
    def load(cls, directory: Path | str) -> SlurmTestBed:
        """The bed whose state is in ``directory`` (started by this or another process)."""
        state = cls.read_state(directory)
        bed = cls(directory, nodes=len(state["nodes"]), cpus=state["cpus"])
        bed.ports = state["ports"]
        bed.processes = {name: (pid, start) for name, (pid, start) in state["processes"].items()}
        return bed

    # -- set-up ----------------------------------------------------------------------------------

    @property
    def _run(self) -> Path:
        return self.directory / "run"

    def _prepare(self) -> None:
        for folder in ("state", "log", "run", *(f"spool/{node}" for node in self.node_names)):
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
        prepare_munge(self.munge_folder)
        ports = _free_ports(1 + len(self.node_names))
        self.ports = {"slurmctld": ports[0]}
        self.ports.update(zip(self.node_names, ports[1:], strict=True))
        self.slurm_conf.write_text(
            slurm_conf_text(self.directory, self.munge_folder, self.ports, self.cpus))

    # -- processes -------------------------------------------------------------------------------

    def _launch(self, name: str, argv: list[str], pid_file: Path, user: str | None = None) -> None:
        """Start a daemon (it forks and its first process exits) and record its pid.

        The environment is minimal and carries the bed's mark, which the slurmstepd processes
        inherit: :meth:`stop` finds them by it.
        """
        pid_file.unlink(missing_ok=True)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "SLURM_CONF": str(self.slurm_conf), MARK: str(self.directory)}
        result = subprocess.run(argv, env=env, user=user, cwd=self.directory / "log",
                                capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            raise SlurmBedError(f"{name}: {' '.join(argv)} exited {result.returncode}: "
                                f"{result.stderr.strip()} {self._log_tail(name)}")
        self.processes[name] = self._await_pid_file(name, pid_file)

    def _await_pid_file(self, name: str, pid_file: Path) -> ProcId:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                start = _start_time(pid)
                if start is not None and _has_mark(pid, str(self.directory)):
                    return pid, start
            time.sleep(0.01)  # no event to wait on: the pid file is written by a daemon
        raise SlurmBedError(f"{name} wrote no {pid_file} in {START_TIMEOUT} s; "
                            f"{self._log_tail(name)}")

    def _wait_idle(self) -> None:
        """Wait until sinfo reports every node idle; fail early when a daemon has died."""
        deadline = time.monotonic() + START_TIMEOUT
        seen = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if not _alive(process):
                    raise SlurmBedError(f"{name} died while starting; {self._log_tail(name)}")
            result = self.client("sinfo", "-h", "-N", "-o", "%N %T", timeout=15)
            seen = (result.stdout + result.stderr).strip()
            states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
            if result.returncode == 0 and all(states.get(n) == "idle" for n in self.node_names):
                return
            time.sleep(0.1)  # no event to wait on: node registration is inside slurmctld
        raise SlurmBedError(f"nodes not idle after {START_TIMEOUT} s (sinfo: {seen!r}); "
                            f"{self._log_tail('slurmctld')}")

    def _cancel_all_jobs(self) -> None:
        """Cancel the bed's jobs and wait until none is left, so no step outlives the bed."""
        self.client("scancel", "--user", "root", timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            listed = self.client("squeue", "-h", "-t", "all", "-o", "%i %T", timeout=STOP_TIMEOUT)
            busy = [line for line in listed.stdout.splitlines()
                    if line.split()[-1] not in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT")]
            if listed.returncode != 0 or not busy:
                return
            time.sleep(0.05)  # no event to wait on: job states live in slurmctld

    def _log_tail(self, name: str, lines: int = 5) -> str:
        path = (self.munge_folder / "log" / "munged.log" if name == "munged"
                else self.directory / "log" / f"{name}.log")
        with contextlib.suppress(OSError):
            last = path.read_text(errors="replace").splitlines()[-lines:]
            if last:
                return f"(log {path}: {' | '.join(last)})"
        return f"(log {path} is empty or missing)"

    def _save_state(self) -> None:
        state = {"nodes": self.node_names, "cpus": self.cpus, "ports": self.ports,
                 "slurm_conf": str(self.slurm_conf), "processes": self.processes}
        self.write_state(state)


# -- helpers -------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (held together, so all differ)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def _has_mark(pid: int, directory: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARK}={directory}".encode() in environ.split(b"\0")


def _marked_processes(directory: str) -> list[ProcId]:
    """Every live process started by the bed in ``directory`` (daemons and slurmstepd)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() \
                and _has_mark(int(entry.name), directory):
            start = _start_time(int(entry.name))
            if start is not None:
                found.append((int(entry.name), start))
    return found


def _terminate(processes: list[ProcId], signum: int = signal.SIGTERM) -> None:
    """Send ``signum``, wait for the processes to go, SIGKILL any left after the timeout."""
    for process in processes:
        _signal(process, signum)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(process) for process in processes):
        if time.monotonic() > deadline:
            if signum == signal.SIGKILL:
                left = [process[0] for process in processes if _alive(process)]
                raise SlurmBedError(f"processes {left} survived SIGKILL for {STOP_TIMEOUT} s")
            _terminate(processes, signal.SIGKILL)
            return
        time.sleep(0.01)  # no pidfd for another session's daemon reaped by init: poll /proc


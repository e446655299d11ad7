"""What the Slurm test bed needs on disk: the programs, munge's folders and key, ``slurm.conf``.

:mod:`lofarexec.testing.slurmbed` starts and stops the daemons; this module checks for and
installs the programs and writes what the daemons read. See that module's docstring for the
bed folder's layout and for why munge's files live under ``/run``.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from pathlib import Path

PROGRAMS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/srun",
            "/usr/bin/sinfo", "/usr/bin/squeue", "/usr/bin/scancel")
MUNGE_USER = "munge"


class SlurmBedError(RuntimeError):
    """The bed could not be set up, started or stopped; the message says what to do."""


def slurm_missing() -> str | None:
    """Why the bed cannot run here (not root, programs missing), or None when it can."""
    if os.geteuid() != 0:
        return "the Slurm test bed needs root (munged as munge, slurmd)"
    missing = [path for path in PROGRAMS if not os.access(path, os.X_OK)]
    if missing:
        return f"missing {', '.join(missing)}: run `apt-get install -y slurm-wlm munge`"
    return None


def ensure_slurm_installed() -> None:
    """Install Debian's ``slurm-wlm`` and ``munge`` when a program is missing (needs root).

    Nothing is started by the install (no systemd here); the bed starts its own daemons.
    """
    if all(os.access(path, os.X_OK) for path in PROGRAMS):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def prepare_munge(folder: Path) -> None:
    """munge's folders and key in ``folder``: munged checks ownership and modes of each, as
    Debian's package sets them."""
    try:
        account = pwd.getpwnam(MUNGE_USER)
    except KeyError:
        raise SlurmBedError("no 'munge' user: run `apt-get install -y munge`") from None
    folder.parent.mkdir(mode=0o755, exist_ok=True)
    folder.mkdir(mode=0o755, exist_ok=True)
    for name, mode in (("run", 0o755), ("etc", 0o700), ("lib", 0o711), ("log", 0o700)):
        sub = folder / name
        sub.mkdir(exist_ok=True)
        os.chown(sub, account.pw_uid, account.pw_gid)
        sub.chmod(mode)
    key = folder / "etc" / "munge.key"
    if not key.exists():  # a key of this bed's own: no system key is needed or read
        key.write_bytes(os.urandom(1024))
    os.chown(key, account.pw_uid, account.pw_gid)
    key.chmod(0o600)


def munged_argv(folder: Path) -> list[str]:
    """munged's command: every file of it in ``folder``, none of the system's."""
    return ["/usr/sbin/munged", f"--socket={folder}/run/munge.socket",
            f"--key-file={folder}/etc/munge.key", f"--pid-file={folder}/run/munged.pid",
            f"--log-file={folder}/log/munged.log", f"--seed-file={folder}/lib/munged.seed"]


def slurm_conf_text(folder: Path, munge_folder: Path, ports: dict[str, int], cpus: int) -> str:
    """The ``slurm.conf`` of the bed in ``folder``: a controller on ``ports["slurmctld"]`` and
    a node per other entry of ``ports``, all on 127.0.0.1."""
    host = socket.gethostname().split(".")[0]  # slurmctld refuses to run under another name
    lines = [
        f"# lofarexec Slurm test bed in {folder}",
        "ClusterName=lofarexec-bed",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ports['slurmctld']}",
        "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_folder}/run/munge.socket",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool/%n",
        f"SlurmctldPidFile={folder}/run/slurmctld.pid",
        f"SlurmdPidFile={folder}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={folder}/log/slurmctld.log",
        f"SlurmdLogFile={folder}/log/slurmd-%n.log",
        # No cgroups, no accounting daemon: what runs in a container without systemd.
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        # CPUs above the machine's count would mark the nodes invalid without this.
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "KillWait=2",  # a cancelled step gets SIGKILL 2 s after SIGTERM (default 30 s)
        "InactiveLimit=0",
        "MinJobAge=30",
    ]
    for node in (name for name in ports if name != "slurmctld"):
        lines.append(f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} "
                     f"Port={ports[node]} CPUs={cpus} State=UNKNOWN")
    lines.append("PartitionName=bed Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"

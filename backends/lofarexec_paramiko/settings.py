"""The ``[paramiko]`` section of ``pipeline.cfg``: one frozen dataclass, checked when loaded.

Values left unset here come from the OpenSSH client config file (``config_file``) for each
host, as ``ssh`` itself would resolve them, so both ssh backends agree on where a host name
leads; a value set here wins over the config file, as ``ssh -l``/``-p``/``-i`` do.
"""

from __future__ import annotations

import dataclasses
import os

import paramiko

from lofarexec.transport import (
    alive_interval_field,
    check_shared_settings,
    kill_grace_field,
    remote_python_field,
)

#: The client config file read when ``config_file`` is not set; a missing one is no error.
DEFAULT_CONFIG_FILE = "~/.ssh/config"
#: What to do with a host whose key is not on record (a changed key is always refused).
HOST_KEY_POLICIES = ("reject", "warn", "accept-new")
#: How jobs start on a connection: through one agent process, or a session channel each.
LAUNCH_MODES = ("agent", "channel")
#: The ciphers offered first by default: AES-GCM, an AEAD whose integrity check runs in the
#: cryptography library, where paramiko checks the MAC of its other ciphers in Python, byte by
#: byte (about a fifth of the control process's CPU per job with ``aes128-ctr`` +
#: ``hmac-sha2-256``). OpenSSH offers both by default.
CHEAPEST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclasses.dataclass(frozen=True)
class ParamikoSettings:
    """``[paramiko]`` section of ``pipeline.cfg``."""

    user: str | None = dataclasses.field(
        default=None, metadata={"help": "remote user; default: the config file's User, else "
                                        "the local user"})
    port: int | None = dataclasses.field(
        default=None, metadata={"help": "remote port; default: the config file's Port, else 22"})
    key_files: tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "private keys to offer, comma separated, tried in order "
                                      "(only these); default: the config file's IdentityFile "
                                      "lines, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa"})
    agent: bool = dataclasses.field(
        default=True, metadata={"help": "also offer the keys of the ssh agent (SSH_AUTH_SOCK), "
                                        "unless the config file says IdentitiesOnly yes"})
    config_file: str = dataclasses.field(
        default=DEFAULT_CONFIG_FILE,
        metadata={"help": "OpenSSH client config read for HostName, User, Port, IdentityFile, "
                          "UserKnownHostsFile, GlobalKnownHostsFile, HostKeyAlias"})
    known_hosts_files: tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "known_hosts files, comma separated, replacing the config "
                                      "file's UserKnownHostsFile (default ~/.ssh/known_hosts); "
                                      "new keys are written to the first"})
    host_key_policy: str = dataclasses.field(
        default="reject", metadata={"help": "a host whose key is not on record: 'reject' (the "
                                            "job is a transport error), 'warn' (log and go on), "
                                            "'accept-new' (record the key); a changed key is "
                                            "always rejected"})
    connect_timeout: float = dataclasses.field(
        default=10.0, metadata={"help": "seconds for the TCP connection and the key exchange"})
    banner_timeout: float = dataclasses.field(
        default=15.0, metadata={"help": "seconds to wait for the server's SSH banner"})
    auth_timeout: float = dataclasses.field(
        default=15.0, metadata={"help": "seconds to wait for each authentication answer"})
    channel_timeout: float = dataclasses.field(
        default=10.0, metadata={"help": "seconds to wait for the server to open a session"})
    launch: str = dataclasses.field(
        default="agent", metadata={"help": "'agent': one agent process per connection starts "
                                           "the host's jobs (a few hundred bytes per job); "
                                           "'channel': a session channel, a remote shell and "
                                           "the launch wrapper per job (each job on its own, "
                                           "bounded by sessions)"})
    sessions: int = dataclasses.field(
        default=10, metadata={"help": "channel mode: most jobs at once on one connection "
                                      "(sshd's MaxSessions, default 10); more jobs on a host "
                                      "open more connections"})
    alive_interval: int = alive_interval_field(
        "TCP keepalive seconds; a host silent for about four intervals is a dropped "
        "connection, and a host agent that hears nothing for four kills its jobs")
    preferred_ciphers: tuple[str, ...] = dataclasses.field(
        default=CHEAPEST_CIPHERS,
        metadata={"help": "ciphers offered first, in this order, comma separated; paramiko's "
                          "other ciphers follow (none is dropped). Default: AES-GCM, which "
                          "costs paramiko the least CPU per packet"})
    remote_python: str = remote_python_field("the host agent or launch wrapper")
    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)
        if self.launch not in LAUNCH_MODES:
            raise ValueError(f"launch must be one of {', '.join(LAUNCH_MODES)}, "
                             f"not {self.launch!r}")
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, "
                             f"not {self.host_key_policy!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {self.port}")
        if self.sessions < 1:
            raise ValueError(f"sessions must be at least 1, not {self.sessions}")
        for name in ("connect_timeout", "banner_timeout", "auth_timeout", "channel_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.user is not None and not self.user.strip():
            raise ValueError("user may not be empty; leave it unset for the config file's User")
        config_file = os.path.expanduser(self.config_file)
        if self.config_file != DEFAULT_CONFIG_FILE and not os.path.isfile(config_file):
            raise ValueError(f"config_file {self.config_file} does not exist")
        known = list(paramiko.Transport._preferred_ciphers)  # noqa: SLF001 - no public list
        for cipher in self.preferred_ciphers:
            if cipher not in known:
                raise ValueError(f"preferred_ciphers: paramiko has no cipher {cipher!r}; it "
                                 f"has {', '.join(known)}")
        for path in self.key_files:
            if not os.path.isfile(os.path.expanduser(path)):
                raise ValueError(f"key file {path} does not exist")

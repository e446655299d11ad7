"""Where a host name leads, and which host keys it may show: OpenSSH's rules, read by paramiko.

:func:`resolve_target` looks a job's host up in the client config file with
:class:`paramiko.SSHConfig` (the same ``Host`` blocks ``ssh`` reads, so both ssh backends agree
on HostName, User, Port, IdentityFile and UserKnownHostsFile), then lets the ``[paramiko]``
settings override it. :class:`KnownHosts` checks a server's key against the system and user
``known_hosts`` files under the configured policy, and records new keys for ``accept-new``.
"""

from __future__ import annotations

import binascii
import copy
import dataclasses
import getpass
import hmac
import logging
import os
import threading

import paramiko
from paramiko.hostkeys import HostKeyEntry

from lofarexec.errors import ConfigError, HostKeyError
from lofarexec.transport import out_of_descriptors

from .settings import DEFAULT_CONFIG_FILE, ParamikoSettings

SSH_PORT = 22
DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_log = logging.getLogger("lofarexec.paramiko")


@dataclasses.dataclass(frozen=True)
class Target:
    """One host as the config resolves it: where to connect, as whom, with which keys."""

    name: str
    """The job's host name, as the user wrote it (used in every message)."""
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    keys_required: bool
    """True when ``key_files`` were named explicitly: a missing one is an error, not a skip."""
    use_agent: bool
    user_known_hosts: tuple[str, ...]
    global_known_hosts: tuple[str, ...]
    host_key_alias: str | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name its key is recorded under: ``HOST`` on port 22, else ``[HOST]:PORT``."""
        name = self.host_key_alias or self.hostname
        return name if self.port == SSH_PORT or self.host_key_alias else f"[{name}]:{self.port}"


class SSHConfig(paramiko.SSHConfig):
    """paramiko's client config, minus a user-name lookup per ``Host`` block and per value.

    ``paramiko.SSHConfig.lookup`` calls ``getpass.getuser()`` for every block it passes (to
    test ``Match`` lines, even in a block that has none) and for every value it expands (even
    one without a ``%`` token), so resolving N hosts in a config of N blocks cost N² lookups
    of the user (issue 17), each reading ``/etc/passwd`` where no ``USER`` is set. Here a block
    without ``Match`` lines matches no ``Match`` at once, and a value without a ``%`` token
    only has its ``~`` replaced (the home folder looked up once): what paramiko returns for
    each. Only ``Match`` lines and ``%`` tokens (``%r``, ``%u``...) still ask for the user."""

    def _does_match(self, match_list: list[dict[str, object]], target_hostname: str,
                    canonical: bool, final: bool, options: dict[str, object]) -> object:
        if not match_list:
            return []
        return super()._does_match(match_list, target_hostname, canonical, final, options)

    _home: str | None = None
    _index: tuple[dict[str, list[int]], list[int]] | None = None

    def _lookup(self, hostname: str, options: dict[str, object] | None = None,
                canonical: bool = False, final: bool = False) -> dict[str, object]:
        """paramiko's pass over the blocks, given only those that can apply to ``hostname``:
        a ``Host`` line of plain names (no ``*?[!``, no ``Match``) applies to those names
        alone, so a config of a block per host is not scanned whole for each host (the
        same answer: fnmatch of a plain name on POSIX is equality)."""
        by_name, others = self._index or self._make_index()
        chosen = sorted(by_name.get(hostname, []) + others)
        view = copy.copy(self)  # not self: other set-up threads look hosts up at once
        view._config = [self._config[position] for position in chosen]
        return super(SSHConfig, view)._lookup(hostname, options, canonical, final)

    def _make_index(self) -> tuple[dict[str, list[int]], list[int]]:
        by_name: dict[str, list[int]] = {}
        others: list[int] = []
        for position, context in enumerate(self._config):
            names = context.get("host", [])
            plain = (names and not context.get("matches") and os.path.normcase("A") == "A"
                     and not any(mark in name for name in names for mark in "*?[!"))
            if not plain:
                others.append(position)
                continue
            for name in dict.fromkeys(names):
                by_name.setdefault(name, []).append(position)
        self._index = (by_name, others)
        return self._index

    def _tokenize(self, config: dict[str, object], target_hostname: str, key: str,
                  value: object) -> object:
        if not isinstance(value, str) or "%" in value:
            return super()._tokenize(config, target_hostname, key, value)
        if "~" not in value or "~" not in self._allowed_tokens(key):
            return value
        if self._home is None:
            self._home = os.path.expanduser("~")
        return value.replace("~", self._home)  # the one token of paramiko's without a %


def load_ssh_config(settings: ParamikoSettings) -> SSHConfig:
    """The client config named by the settings; an empty one when the default file is absent."""
    path = os.path.expanduser(settings.config_file)
    config = SSHConfig()
    if settings.config_file == DEFAULT_CONFIG_FILE and not os.path.isfile(path):
        return config
    try:
        with open(path) as config_text:
            config.parse(config_text)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(f"cannot read it: {exc}; fix it or set [paramiko] config_file",
                          filename=path) from exc
    return config


def resolve_target(host: str, settings: ParamikoSettings, config: paramiko.SSHConfig,
                   local_user: str | None = None) -> Target:
    """``host`` looked up in ``config``, with the settings' explicit values on top; a
    :class:`ConfigError` naming the config file and the host when it cannot be used.
    ``local_user`` is the default login name: looked up once when the backend opens, because
    a lookup later may fail for want of a descriptor to read ``/etc/passwd`` with."""
    try:
        found = config.lookup(host)
    except Exception as exc:  # paramiko raises bare exceptions for bad Match/canonical lines
        raise ConfigError(f"{host}: cannot be resolved: {exc}",
                          filename=settings.config_file) from exc
    for unsupported in ("proxycommand", "proxyjump"):
        if found.get(unsupported, "none").lower() != "none":
            raise ConfigError(f"{host}: sets {unsupported}, which the paramiko backend does not "
                              "support; use [remote] method = ssh", filename=settings.config_file)
    try:
        port = settings.port or int(found.get("port", SSH_PORT))
    except ValueError:
        raise ConfigError(f"{host}: bad Port {found.get('port')!r}; give a number",
                          filename=settings.config_file) from None
    identities_only = found.get("identitiesonly", "no").lower() == "yes"
    if settings.key_files:
        key_files, required = settings.key_files, True
    elif found.get("identityfile"):
        key_files, required = tuple(found["identityfile"]), False
    else:
        key_files, required = DEFAULT_KEY_FILES, False
    return Target(
        name=host,
        hostname=found.get("hostname", host),
        port=port,
        user=settings.user or found.get("user") or local_user or getpass.getuser(),
        key_files=tuple(os.path.expanduser(path) for path in key_files),
        keys_required=required,
        use_agent=settings.agent and not (identities_only or settings.key_files),
        user_known_hosts=_paths(settings.known_hosts_files
                                or _split(found.get("userknownhostsfile"))
                                or DEFAULT_USER_KNOWN_HOSTS),
        global_known_hosts=_paths(_split(found.get("globalknownhostsfile"))
                                  or DEFAULT_GLOBAL_KNOWN_HOSTS),
        host_key_alias=found.get("hostkeyalias"),
    )


class KnownHosts:
    """The known_hosts files of a run, read once each, and the host-key policy applied to them.

    Shared by every connection of a backend (a lock guards it), so a key that ``accept-new``
    records for one connection is known to the next one at once.
    """

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._files: dict[str, paramiko.HostKeys] = {}
        # what each host name has on record: a lookup scans every line of every file (an HMAC
        # per hashed line), and each connection asks twice (key types, then the check)
        self._found: dict[tuple[str, tuple[str, ...]], list[tuple[str, paramiko.PKey]]] = {}
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def key_types(self, target: Target) -> list[str]:
        """Key types on record for ``target``: the ones to ask the server for first."""
        with self._lock:
            return sorted({kind for kind, _ in self._recorded(target)})

    def check(self, target: Target, key: paramiko.PKey) -> None:
        """Accept ``key`` for ``target`` or raise :class:`HostKeyError` (the policy decides)."""
        with self._lock:
            recorded = self._recorded(target)
            if any(kind == key.get_name() and known == key for kind, known in recorded):
                return
            if recorded:
                files = ", ".join(target.user_known_hosts + target.global_known_hosts)
                raise HostKeyError(
                    f"its {key.get_name()} key ({key.fingerprint}) differs from the one on "
                    f"record for {target.known_hosts_name} in {files}: refused (the host may be "
                    "impersonated); if it was reinstalled, remove its old line",
                    host=target.name)
            self._unknown(target, key)

    def _unknown(self, target: Target, key: paramiko.PKey) -> None:
        where = target.user_known_hosts[0] if target.user_known_hosts else "known_hosts"
        if self.policy == "reject":
            raise HostKeyError(
                f"its key ({key.get_name()} {key.fingerprint}) is not in {where}: refused; "
                f"add it there (ssh-keyscan -p {target.port} {target.hostname}) or set "
                "[paramiko] host_key_policy = accept-new", host=target.name)
        if self.policy == "warn":
            _log.warning("%s: accepting its unknown %s key %s without recording it",
                         target.name, key.get_name(), key.fingerprint)
            return
        self._record(target, key, where)

    def _record(self, target: Target, key: paramiko.PKey, path: str) -> None:
        line = f"{target.known_hosts_name} {key.get_name()} {key.get_base64()}\n"
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "a") as known_hosts:
                known_hosts.write(line)
        except OSError as exc:
            raise HostKeyError(f"cannot record its new key in {path}: {exc}",
                               host=target.name) from exc
        self._file(path, target.name).add(target.known_hosts_name, key.get_name(), key)
        self._found.clear()  # looked up again, with the new key
        self._indexes.pop(path, None)
        _log.warning("%s: recorded its new %s key %s in %s", target.name, key.get_name(),
                     key.fingerprint, path)

    def _recorded(self, target: Target) -> list[tuple[str, paramiko.PKey]]:
        """Each file's first key of each type on record for the target (as paramiko's
        ``HostKeys.lookup`` gives them), looked up once per host name."""
        paths = target.user_known_hosts + target.global_known_hosts
        found = self._found.get((target.known_hosts_name, paths))
        if found is None:
            found = []
            for path in paths:
                index = self._indexes.get(path)
                if index is None:
                    index = self._indexes[path] = _Index(self._file(path, target.name))
                kinds: dict[str, paramiko.PKey] = {}
                for entry in index.lookup(target.known_hosts_name):
                    kinds.setdefault(entry.key.get_name(), entry.key)
                found += kinds.items()
            self._found[target.known_hosts_name, paths] = found
        return found

    def _file(self, path: str, host: str) -> paramiko.HostKeys:
        host_keys = self._files.get(path)
        if host_keys is None:
            host_keys = paramiko.HostKeys()
            if os.path.isfile(path):
                try:
                    host_keys.load(path)
                except (OSError, paramiko.SSHException, ValueError) as exc:
                    words = out_of_descriptors(exc) or exc  # then what to do, not errno 24
                    raise HostKeyError(f"cannot read the known_hosts file {path}: {words}",
                                       host=host) from exc
            self._files[path] = host_keys
        return host_keys


class _Index:
    """One known_hosts file's lines by host name: plain names in a dict, hashed ones
    (``|1|salt|hmac``) with salt and HMAC decoded once. A lookup then costs one HMAC in C per
    hashed line; paramiko's ``HostKeys.lookup`` decodes, hashes and encodes again per line
    (~17 µs each: a site's 1,000-line hashed file cost each host ~17 ms per lookup, issue 17)."""

    def __init__(self, host_keys: paramiko.HostKeys) -> None:
        self._plain: dict[str, list[tuple[int, HostKeyEntry]]] = {}
        self._hashed: list[tuple[bytes, bytes, int, HostKeyEntry]] = []
        for position, entry in enumerate(host_keys._entries):  # noqa: SLF001 - no public list
            if entry.key is None:
                continue
            for name in entry.hostnames:
                if not name.startswith("|1|"):
                    self._plain.setdefault(name, []).append((position, entry))
                    continue
                try:
                    _, _, salt, digest = name.split("|")
                    self._hashed.append((binascii.a2b_base64(salt), binascii.a2b_base64(digest),
                                         position, entry))
                except (ValueError, binascii.Error):
                    continue  # not a hash paramiko could match either

    def lookup(self, name: str) -> list[HostKeyEntry]:
        """The lines naming ``name``, in file order (as ``HostKeys.lookup`` finds them)."""
        found = dict(self._plain.get(name, ()))
        if not name.startswith("|1|"):
            raw = name.encode()
            for salt, digest, position, entry in self._hashed:
                if hmac.compare_digest(hmac.digest(salt, raw, "sha1"), digest):
                    found[position] = entry
        return [found[position] for position in sorted(found)]


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def _paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.expanduser(path) for path in paths if path != "/dev/null")

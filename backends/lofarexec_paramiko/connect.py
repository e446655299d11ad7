"""Opening one authenticated SSH connection, and the one edge where paramiko's errors stop.

:func:`connect` waits in its caller's thread for a handshake's worth of round trips (the
backend's connections wait on its hub instead, :mod:`.dial`, with the same pieces:
:func:`ssh_transport`, :func:`authenticated`) and gives back a ready
:class:`paramiko.Transport` or raises a :class:`~lofarexec.errors.BackendError` subclass
naming the host (a :class:`~lofarexec.errors.ConfigError` for a key file of ``[paramiko]
key_files`` that cannot be used). :func:`translate` turns any exception met while talking to a
host into that tree, so no paramiko or socket type reaches the scheduler (errors.py: foreign
exceptions are translated where they occur).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Sequence

import paramiko

from lofarexec.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConnectError,
    HostKeyError,
    LofarexecError,
)
from lofarexec.transport import out_of_descriptors

from .hosts import KnownHosts, Target
from .lean import LeanTransport
from .settings import ParamikoSettings

#: What paramiko raises when a channel cannot be opened or used (the connection may be gone).
CHANNEL_ERRORS = (paramiko.SSHException, OSError, EOFError)
#: Keepalive probes before the kernel calls a silent peer gone (OpenSSH's ServerAliveCountMax).
ALIVE_COUNT = 3


def connect(target: Target, settings: ParamikoSettings, known_hosts: KnownHosts,
            keys: KeyCache, on_transport: Callable[[paramiko.Transport], None],
            on_heard: Callable[[], None] = lambda: None) -> paramiko.Transport:
    """An authenticated transport to ``target``, waited for in this thread (the backend's
    connections wait on its hub instead: :mod:`.dial`); ``on_transport`` gets it before the
    handshake (so that another thread can abort a slow handshake by closing it); ``on_heard``
    is called (in paramiko's thread) whenever bytes arrive from the host."""
    plain = socket.create_connection((target.hostname, target.port),
                                     timeout=settings.connect_timeout)
    transport = ssh_transport(plain, target, settings, known_hosts, on_heard)
    on_transport(transport)
    try:
        transport.start_client(timeout=settings.connect_timeout)
        authenticated(transport, target, known_hosts, keys)
    except BaseException:
        close_transport(transport)
        raise
    return transport


def ssh_transport(plain: socket.socket, target: Target, settings: ParamikoSettings,
                  known_hosts: KnownHosts,
                  on_heard: Callable[[], None] = lambda: None) -> paramiko.Transport:
    """A client transport, not started yet, over ``plain`` (connected; owned by the transport
    from now on, or closed here), with the settings' timeouts and preferences."""
    sock = heard_socket(plain, settings, on_heard)
    try:
        transport = LeanTransport(sock)
    except BaseException:
        sock.close()
        raise
    transport.banner_timeout = settings.banner_timeout
    transport.auth_timeout = settings.auth_timeout
    transport.channel_timeout = settings.channel_timeout
    _prefer_known_key_types(transport, known_hosts.key_types(target))
    _prefer_ciphers(transport, settings.preferred_ciphers)
    return transport


def authenticated(transport: paramiko.Transport, target: Target, known_hosts: KnownHosts,
                  keys: KeyCache) -> None:
    """After the key exchange: check the host's key, then log in (the caller closes the
    transport if this raises)."""
    if not transport.initial_kex_done:  # paramiko returns quietly when the timeout ends
        raise TimeoutError  # (a host that accepts and never speaks: "timed out")
    known_hosts.check(target, transport.get_remote_server_key())
    authenticate(transport, target, keys)
    transport.get_exception()  # clear what a refused key left: from now on, it means "lost"


def heard_socket(plain: socket.socket, settings: ParamikoSettings,
                 on_heard: Callable[[], None] = lambda: None) -> HeardSocket:
    """``plain`` (connected) with Nagle off (≈40 ms per SSH exchange otherwise) and, when
    ``alive_interval`` is set, kernel keepalives that notice a dead link (not a frozen host:
    its kernel answers them; :func:`probe` does); ``on_heard`` hears every byte read."""
    sock = HeardSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.on_heard = on_heard
    try:
        sock.settimeout(settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.alive_interval:
            _set_keepalive(sock, settings.alive_interval)
    except OSError:
        sock.close()
        raise
    return sock


class HeardSocket(socket.socket):
    """A socket that says when the host said something: the connection's silence limit is
    measured from the last byte read (paramiko's thread does all the reading); and that
    acknowledges what it reads at once.

    Why at once: sshd leaves Nagle's algorithm on for sessions without a terminal, so a small
    packet it sends while another is unacknowledged waits for our ACK, which Linux delays by
    up to 40 ms. That cost each connection ~44 ms between authentication and its first
    session (sshd's ``hostkeys-00`` notice, then the session's confirmation), and can hold a
    job's exit frame the same way. ``TCP_QUICKACK`` does not stay set, so it is set again
    after each read (one system call; Linux only, elsewhere nothing changes)."""

    on_heard: Callable[[], None]

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        if data:
            if _QUICKACK is not None:
                self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            self.on_heard()
        return data


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def probe(transport: paramiko.Transport) -> None:
    """Ask the host for an answer without waiting for it, as OpenSSH's ServerAliveInterval
    does: a global request no server knows, which every server refuses; the refusal, like any
    bytes, counts as heard. paramiko has no public call for this: ``global_request(kind,
    wait=False)`` sets want-reply to ``wait`` (so no answer comes), ``wait=True`` blocks this
    thread until the answer, and ``send_ignore`` / ``set_keepalive`` ask for none. So the
    message is built here and queued with the same call ``global_request`` itself uses."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_GLOBAL_REQUEST)
    message.add_string("keepalive@openssh.com")
    message.add_boolean(True)  # want a reply
    transport._send_user_message(message)  # noqa: SLF001 - see above: no public call does it


def _set_keepalive(sock: socket.socket, interval: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", interval), ("TCP_KEEPINTVL", interval),
                          ("TCP_KEEPCNT", ALIVE_COUNT),
                          ("TCP_USER_TIMEOUT", interval * (ALIVE_COUNT + 1) * 1000)):
        if hasattr(socket, option):  # Linux names; elsewhere the system defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _prefer_known_key_types(transport: paramiko.Transport, known: list[str]) -> None:
    """Ask for a key type already on record first, as OpenSSH does, so that a host with several
    host keys shows the one we can check rather than an unknown one."""
    if not known:
        return
    options = transport.get_security_options()
    wanted = []
    for kind in known:
        wanted += ["rsa-sha2-512", "rsa-sha2-256", kind] if kind == "ssh-rsa" else [kind]
    options.key_types = _first(wanted, options.key_types)


def _prefer_ciphers(transport: paramiko.Transport, preferred: tuple[str, ...]) -> None:
    """Offer ``preferred`` first (``[paramiko] preferred_ciphers``), the others after them: the
    server still picks the first of ours it also has, so none is ever dropped."""
    options = transport.get_security_options()
    options.ciphers = _first(preferred, options.ciphers)


def _first(wanted: Sequence[str], offered: Sequence[str]) -> list[str]:
    """``offered`` reordered: those also in ``wanted`` first, in its order, then the rest."""
    first = [name for name in wanted if name in offered]
    return first + [name for name in offered if name not in first]


def authenticate(transport: paramiko.Transport, target: Target, keys: KeyCache) -> None:
    """Offer the target's key files, then (if allowed) the agent's keys, until one is taken."""
    tried, problems = [], []
    for path in target.key_files:
        try:
            key = keys.load(path, required=target.keys_required)
        except ConfigError as exc:
            if target.keys_required:  # named in [paramiko] key_files: the config's mistake
                raise ConfigError(f"{target.name}: {exc}", section="paramiko",
                                  key="key_files") from exc
            problems.append(str(exc))
            continue
        if key is not None and _offer(transport, target, key):
            return
        if key is not None:
            tried.append(path)
    if target.use_agent and _offer_agent_keys(transport, target, tried):
        return
    offered = ", ".join(tried) or "none"
    note = f" ({'; '.join(problems)})" if problems else ""
    raise AuthenticationError(
        f"user {target.user!r} was refused with every key offered ({offered}){note}; check "
        "[paramiko] key_files or the IdentityFile and User lines of the ssh config",
        host=target.name)


def _offer(transport: paramiko.Transport, target: Target, key: paramiko.PKey) -> bool:
    try:
        transport.auth_publickey(target.user, key)
    except paramiko.BadAuthenticationType as exc:
        raise AuthenticationError(f"the server takes no public keys (only {exc.allowed_types})",
                                  host=target.name) from exc
    except paramiko.AuthenticationException:
        return False
    return transport.is_authenticated()


def _offer_agent_keys(transport: paramiko.Transport, target: Target, tried: list[str]) -> bool:
    """Offer each agent key; the agent connection is this thread's own (its socket is not safe
    to share between threads) and closed at once."""
    try:
        agent = paramiko.Agent()
    except (paramiko.SSHException, OSError):  # no usable agent: as if it had no keys
        return False
    try:
        for key in agent.get_keys():
            if _offer(transport, target, key):
                return True
            tried.append(f"agent key {key.fingerprint}")
    finally:
        agent.close()
    return False


class KeyCache:
    """Private keys read once per backend, however many connections use them."""

    def __init__(self) -> None:
        self._keys: dict[str, paramiko.PKey | None] = {}
        self._lock = threading.Lock()

    def load(self, path: str, *, required: bool) -> paramiko.PKey | None:
        """The key in ``path``; None if an optional one is absent; ConfigError if unusable."""
        with self._lock:
            if path in self._keys:
                return self._keys[path]
            try:
                key: paramiko.PKey | None = paramiko.PKey.from_path(path)
            except FileNotFoundError as exc:
                if required:
                    raise ConfigError(f"key file {path} does not exist") from exc
                key = None
            # paramiko says so for OpenSSH-format keys; for PEM ones, cryptography's TypeError
            # ("Password was not given but private key is encrypted") comes through as it is
            except (paramiko.PasswordRequiredException, TypeError) as exc:
                raise ConfigError(f"key file {path} needs a passphrase: load it into the ssh "
                                  "agent instead") from exc
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise ConfigError(f"key file {path} cannot be read: {exc}") from exc
            self._keys[path] = key
            return key


class StatusEvent(threading.Event):
    """An event that also calls ``notify`` when paramiko sets it: a channel's
    ``status_event``, or a transport's negotiation end (called in paramiko's thread, perhaps
    under the channel's lock: ``notify`` must not block or take locks)."""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def set(self) -> None:
        super().set()
        self._notify()


class _BufferReady:
    """What a channel's buffers set when data or EOF arrives (in place of the pipe that
    ``Channel.fileno()`` would make: no descriptor per channel, issue 17): calls ``notify``,
    with the same rules as :class:`StatusEvent`."""

    __slots__ = ("_notify",)

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def set(self) -> None:
        self._notify()

    def clear(self) -> None:
        """Nothing to read any more: nothing to do (the reader checks the buffers itself)."""


def watch_channel(channel: paramiko.Channel, notify: Callable[[], None]) -> None:
    """Have paramiko's thread call ``notify`` whenever ``channel`` receives data or EOF, its
    exit status arrives or it closes (at once, if it already holds data or is closed)."""
    channel.status_event = StatusEvent(notify)
    ready = _BufferReady(notify)
    channel.in_buffer.set_event(ready)
    channel.in_stderr_buffer.set_event(ready)


def lost(transport: paramiko.Transport) -> bool:
    """Whether the transport is dead or dying (its thread records why before it stops, and
    unlinks the channels before it marks itself inactive)."""
    return not transport.is_active() or transport.saved_exception is not None


def lost_reason(transport: paramiko.Transport, target: Target) -> str:
    """Why a lost transport was lost, naming the host's address."""
    cause = transport.saved_exception
    if cause is None or isinstance(cause, EOFError):
        return f"{target.hostname}:{target.port} closed the connection"
    return f"{target.hostname}:{target.port}: {describe(cause)}"


def close_transport(transport: paramiko.Transport) -> None:
    """Close a transport, its socket and its thread, whatever state it is in.

    The socket is shut down first: paramiko's thread sits in ``recv`` with a 0.1 s timeout
    and only then sees that it should stop (closing the fd does not wake it), so each close
    cost ~50 ms, one host after another (issue 17); a shut-down socket wakes it at once."""
    with contextlib.suppress(OSError):  # already closed or never connected: nothing to wake
        transport.sock.shutdown(socket.SHUT_RDWR)
    transport.close()
    transport.sock.close()  # close() skips this when the transport died by itself first
    if transport.is_alive() and transport is not threading.current_thread():
        transport.join()


def translate(exc: BaseException, target: Target, doing: str) -> LofarexecError:
    """``exc``, met while ``doing`` something with ``target``, as one of lofarexec's errors
    (a configuration mistake stays the :class:`ConfigError` it is)."""
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, BackendError):
        return exc if exc.host else type(exc)(str(exc), host=target.name)
    where = f"{target.hostname}:{target.port}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(f"its key differs from the one on record: {exc}", host=target.name)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationError(f"authentication failed: {_words(exc)}", host=target.name)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ConnectError(f"{doing} {where}: timed out", host=target.name)
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve {target.hostname}: {exc.strerror or exc}",
                            host=target.name)
    if isinstance(exc, OSError):
        words = out_of_descriptors(exc) or exc.strerror or _words(exc)
        return ConnectError(f"{doing} {where}: {words}", host=target.name)
    if isinstance(exc, EOFError):
        return ConnectError(f"{doing} {where}: the host closed the connection", host=target.name)
    if isinstance(exc, paramiko.ChannelException):
        return BackendError(f"{doing} {where}: the server refused ({exc.text})", host=target.name)
    if isinstance(exc, paramiko.SSHException):
        return ConnectError(f"{doing} {where}: {_words(exc)}", host=target.name)
    return BackendError(f"{doing} {where}: unexpected {type(exc).__name__}: {_words(exc)}",
                        host=target.name)


def describe(exc: BaseException) -> str:
    """What went wrong, in a few words, without the host (the caller names it)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _words(exc)


def _words(exc: BaseException) -> str:
    """An exception as one line (some carry newlines, some carry nothing)."""
    return " ".join(str(exc).split()) or type(exc).__name__

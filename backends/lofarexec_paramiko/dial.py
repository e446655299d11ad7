"""Connecting to a host without holding a thread while it is silent: the TCP connect and the SSH
banner and key exchange are waited for on the hub (:mod:`.hub`).

::

    set-up thread: Dial.begin(): the host's addresses (a name lookup may wait) --> hub.poke
    hub thread, Dial.turn(): connect_ex (non-blocking) --> hub.watch(socket) --> writable:
      connected --> a set-up thread: ssh_transport(...).start_client(event) (returns at once):
      paramiko's own thread reads the banner, exchanges keys, sets the event --> hub.poke -->
      done(transport)
      failed, refused or past connect_timeout (one timer on the hub) --> done(exception)

Why (issue 17): a connection used to wait for its handshake in one of the hub's 16 set-up
threads, so 16 hosts that accept TCP and never answer held every set-up thread until their
timeouts, and every other host waited behind them. Now a silent host costs its socket and
paramiko's thread for it (which it has anyway) until its own timeout, nothing more; what needs
the host's answers after the key exchange (host key, authentication, the agent) is short and
runs in a set-up thread again.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paramiko

from .connect import StatusEvent, ssh_transport

if TYPE_CHECKING:
    from .hosts import KnownHosts, Target
    from .hub import Hub
    from .settings import ParamikoSettings

#: What ``connect_ex`` says while a connection is on its way.
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)


class Dial:
    """One connection's way to a key-exchanged transport, served by the hub (see the module
    docstring). ``done`` is called once, in the hub's thread, with the transport or what
    went wrong; ``on_transport`` gets the transport before its handshake (it may raise to
    stop it). Only :meth:`begin`, :meth:`abort` and (in a set-up thread, while the hub waits for
    it) :meth:`_start_ssh` run outside the hub's thread."""

    def __init__(self, target: Target, settings: ParamikoSettings, hub: Hub,
                 known_hosts: KnownHosts, on_heard: Callable[[], None],
                 on_transport: Callable[[paramiko.Transport], None],
                 done: Callable[[paramiko.Transport | BaseException], None]) -> None:
        self.due: float | None = None  # the hub's
        self._target, self._settings, self._hub = target, settings, hub
        self._known_hosts = known_hosts
        self._on_heard, self._on_transport, self._done = on_heard, on_transport, done
        self._addresses: list[tuple[int, int, int, tuple[Any, ...]]] = []  # IPv6: 4 items
        self._failure: BaseException | None = None  # set before the hub's first turn only
        self._aborted = False
        self._sock: socket.socket | None = None  # the plain socket while it connects
        self._address: tuple[Any, ...] | None = None
        self._transport: paramiko.Transport | None = None
        self._deadline = 0.0
        self._starting = False  # a set-up thread is in _start_ssh
        self._over = False

    def begin(self) -> None:
        """Look the host's addresses up (in a set-up thread: a name lookup may wait), then
        leave the rest to the hub."""
        try:
            found = socket.getaddrinfo(self._target.hostname, self._target.port,
                                       type=socket.SOCK_STREAM)
            self._addresses = [(family, kind, proto, address)
                               for family, kind, proto, _, address in found]
        except OSError as exc:
            self._failure = exc
        self._hub.poke(self)

    def abort(self) -> None:
        """Stop connecting (any thread): ``done`` hears why soon, from the hub."""
        self._aborted = True
        self._hub.poke(self)

    # -- the hub's thread ------------------------------------------------------------------
    def turn(self) -> float | None:
        if self._over:
            return None
        try:
            result = self._step()
        except Exception as exc:  # noqa: BLE001 - the edge: the connection translates it
            result = exc
        if result is None:  # waiting: for the host until the deadline, or for the start task
            return None if self._starting else self._deadline
        self._over = True
        self._drop_socket()
        self._done(result)
        return None

    def _step(self) -> paramiko.Transport | BaseException | None:
        """The transport once negotiated, what went wrong, or None: still waiting."""
        if self._starting:  # a set-up thread is starting the transport: it pokes when done
            return None
        if self._failure is not None:
            return self._failure
        if self._aborted:
            return ConnectionAbortedError("the backend was closed while connecting")
        if self._transport is not None:
            return self._negotiated(self._transport)
        if self._sock is None:
            return self._connect_next(None)
        status = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not status:
            status = self._sock.connect_ex(self._address)
        if status in (0, errno.EISCONN):
            self._hub.unwatch(self._sock)
            plain, self._sock, self._starting = self._sock, None, True
            self._hub.submit(lambda: self._start_ssh(plain))
            return None
        if status in _IN_PROGRESS:
            return TimeoutError() if time.monotonic() >= self._deadline else None
        self._drop_socket()
        return self._connect_next(OSError(status, os.strerror(status)))

    def _connect_next(self, failure: BaseException | None) -> BaseException | None:
        """Begin connecting to the next address; ``failure`` (the last address's) if none is
        left."""
        while self._addresses:
            family, kind, proto, address = self._addresses.pop(0)
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            status = sock.connect_ex(address)
            if status == 0 or status in _IN_PROGRESS:
                self._sock, self._address = sock, address
                self._deadline = time.monotonic() + self._settings.connect_timeout
                self._hub.watch(sock, self)
                return None
            sock.close()
            failure = OSError(status, os.strerror(status))
        return failure or OSError(errno.EHOSTUNREACH, "no address to connect to")

    # -- a set-up thread --------------------------------------------------------------------
    def _start_ssh(self, plain: socket.socket) -> None:
        """Connected: from now on paramiko's thread reads the banner and exchanges keys. In a
        set-up thread, not the hub's: starting a thread waits until it runs, which on a busy
        machine is milliseconds, and the hub would wait once per host, one after another."""
        try:
            transport = ssh_transport(plain, self._target, self._settings, self._known_hosts,
                                      self._on_heard)
            self._on_transport(transport)
            transport.start_client(event=StatusEvent(lambda: self._hub.poke(self)))
        except Exception as exc:  # noqa: BLE001 - the edge: the connection translates it
            self._failure = exc
        else:
            self._deadline = time.monotonic() + self._settings.connect_timeout
            self._transport = transport
        self._starting = False
        self._hub.poke(self)

    # -- the hub's thread ------------------------------------------------------------------

    def _negotiated(self, transport: paramiko.Transport
                    ) -> paramiko.Transport | BaseException | None:
        if transport.initial_kex_done:
            transport.completion_event = None  # global requests' answers need not poke us
            return transport
        if not transport.is_active():  # as paramiko's own start_client says it
            return transport.get_exception() or paramiko.SSHException("Negotiation failed.")
        return TimeoutError() if time.monotonic() >= self._deadline else None

    def _drop_socket(self) -> None:
        """Close the plain socket still connecting, if any (the transport's is the
        connection's to close)."""
        if self._sock is not None:
            self._hub.unwatch(self._sock)
            self._sock.close()
            self._sock = None

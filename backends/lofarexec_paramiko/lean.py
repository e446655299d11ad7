"""paramiko's client transport minus per-connection costs that buy this backend nothing.

Measured over 64 hosts (issue 17), each of these cost every connection CPU in the control
process, under the one interpreter lock all hosts share:

* a handshake timer: paramiko starts a ``threading.Timer`` thread per connection once the
  banner is read (``handshake_timeout``) and cancels it after the key exchange; the backend's
  own ``connect_timeout`` deadline already covers the key exchange (:mod:`.dial`, and
  :func:`.connect.connect`). The thread also outlived a close in the key exchange (it is not a
  daemon: a host stalled there held the interpreter's exit for 15 s);
* the server's debug messages (sshd sends one per login, naming the ``authorized_keys`` options)
  escaped byte by byte in Python for a log line, even with paramiko's logger silenced;
* the offered algorithms filtered against an empty ``disabled_algorithms``, element by element,
  on each of the many reads of the preference lists during a key exchange.
"""

from __future__ import annotations

import logging
import socket

import paramiko


class _NoTimerPacketizer(paramiko.Packetizer):
    def start_handshake(self, timeout: float) -> None:
        """No timer thread: the connection's own deadline bounds the handshake."""


class LeanTransport(paramiko.Transport):
    """A :class:`paramiko.Transport` (see the module docstring for what differs)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, packetizer_class=_NoTimerPacketizer)

    def _filter_algorithm(self, type_: str) -> tuple[str, ...]:
        """The preference list as it is: this backend disables no algorithm."""
        return tuple(getattr(self, f"_preferred_{type_}"))

    def _parse_debug(self, m: paramiko.Message) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            super()._parse_debug(m)

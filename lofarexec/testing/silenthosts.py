"""Hosts that accept TCP connections and then say nothing: for tests and benchmarks of how a
backend copes with a frozen host or a hung sshd among working ones (issue 17).

:class:`SilentHosts` listens on two ports of 127.0.0.1: on one, the kernel accepts and nobody
ever speaks (no SSH banner); on the other, each connection gets an SSH banner and then nothing
(a stall in the key exchange). :meth:`SilentHosts.ssh_config` names ``s1..sN`` for an ssh
client config, odd numbers mute, even numbers banner-only. Nothing outside 127.0.0.0/8 is
addressed; :meth:`SilentHosts.close` stops the thread and closes every socket.
"""

from __future__ import annotations

import socket
import threading

BANNER = b"SSH-2.0-OpenSSH_9.2p1 silent-after-banner\r\n"


class SilentHosts:
    """The two silent ports (see the module docstring); ``backlog`` connections each at once."""

    def __init__(self, backlog: int = 64) -> None:
        self.mute = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.banner_only = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._greet, name="silent-hosts", daemon=True)
        self._thread.start()

    def port(self, number: int) -> int:
        """The port of host ``s<number>``: odd numbers never speak, even ones send a banner."""
        return (self.mute if number % 2 else self.banner_only).getsockname()[1]

    def ssh_config(self, count: int) -> str:
        """``Host s1`` .. ``s<count>`` blocks for an ssh client config."""
        return "".join(f"Host s{number}\n    HostName 127.0.0.1\n    Port {self.port(number)}\n\n"
                       for number in range(1, count + 1))

    def close(self) -> None:
        """Stop greeting and close every socket; safe twice."""
        if self._thread.is_alive():
            self.banner_only.shutdown(socket.SHUT_RDWR)  # wakes the accept
            self._thread.join()
        self.banner_only.close()
        self.mute.close()
        for link in self._accepted:
            link.close()

    def _greet(self) -> None:
        while True:
            try:
                link, _ = self.banner_only.accept()
            except OSError:  # shut down: closing
                return
            self._accepted.append(link)
            try:
                link.sendall(BANNER)
            except OSError:  # the client is gone already: nothing to stall
                continue

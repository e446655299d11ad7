"""One node's connection to the log server, from accept to close; the serving thread's only.

Its first frame must be a hello naming a registered job and that job's token; after it, log
records are re-emitted in the master's logging (a :class:`~lofarexec.channel.records.RecordMaker`
makes them, the server's :class:`~lofarexec.channel.emitter.BatchEmitter` writes a loop turn's
records at once) and every other frame goes to the run's
:class:`~lofarexec.channel.exchange.JobExchange`. A connection that breaks the protocol is
closed with one warning; the others carry on. Once admitted, a connection is served until the
node closes it, also after its job is forgotten, so that nothing the node already sent is cut
off.
"""

from __future__ import annotations

import logging
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lofarexec.channel.emitter import BatchEmitter
from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.jobtable import JobTable, RegisteredJob
from lofarexec.channel.protocol import (
    MSG_HELLO,
    MSG_LOG,
    FrameDecoder,
    count_frames,
    parse_hello,
    parse_log_record,
)
from lofarexec.channel.records import RecordMaker
from lofarexec.errors import ProtocolError

# The server's name: the one warning per refused connection is the log server's to users.
logger = logging.getLogger("lofarexec.channel.logserver")

_RECV_BYTES = 1 << 16
_HEADER_BYTES = 4
#: At a stop, how much of a connection's unread data is read just to say how much is lost.
_MAX_UNREAD_COUNTED = 64 << 20


class Refusals:
    """Warns of refused connections, but only of the first few: a flood must not flood the log."""

    WARNED = 10

    def __init__(self) -> None:
        self.count = 0

    def note(self, text: str) -> None:
        self.count += 1
        if self.count <= self.WARNED:
            logger.warning("%s%s", text, "" if self.count < self.WARNED else
                           " (further refused connections are logged at debug level)")
        else:
            logger.debug("%s", text)


@dataclass(frozen=True)
class Shared:
    """What every connection of one server uses."""

    selector: selectors.BaseSelector
    table: JobTable
    exchange: JobExchange
    recipe_name: str
    max_message_bytes: int
    """The frame size allowed once a connection has authenticated (outputs can be big)."""
    send: Callable[[NodeConnection, dict[str, Any]], None]
    """Sends a reply from any thread (the server queues those of other threads)."""
    emitter: BatchEmitter
    """Holds the records of a loop turn; flushed before a close and before a reply."""
    refusals: Refusals = field(default_factory=Refusals)


@dataclass(eq=False)
class NodeConnection:
    """An accepted socket; ``job`` is set once its hello has been accepted."""

    sock: socket.socket
    peer: str
    decoder: FrameDecoder
    deadline: float
    """When a connection still without hello is closed (monotonic clock)."""
    shared: Shared
    job_id: int | None = None
    job: RegisteredJob | None = None
    host: str = ""
    closed: bool = False
    outbox: bytearray = field(default_factory=bytearray)
    records: RecordMaker | None = None
    """Set with ``job``: makes its log frames into the master's records."""
    _counted: int = 0
    """Log records handled since the job table was last told (it is told once per read)."""

    def refuse_after_error(self, exc: Exception) -> None:
        """Handling one of its records raised (e.g. a master-side logging filter): drop this
        peer only, keep serving the rest."""
        self.reject(f"internal error handling its frames: {exc!r}")

    def on_readable(self) -> None:
        """Read what arrived and handle each whole frame; close on EOF or a protocol error."""
        # Before its hello a connection may not make us hold more than one small frame.
        size = _RECV_BYTES if self.job is not None else max(
            1, self.decoder.max_bytes + _HEADER_BYTES - self.decoder.buffered)
        try:
            data = self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            if self.job_id is None:
                self.reject(f"connection error before hello: {exc}")
        if data and self.job is not None:
            self.shared.table.count_bytes(self.job, len(data))
        try:
            if data:
                try:
                    for message in self.decoder.feed_iter(data):
                        self._on_message(message)
                finally:
                    self._count_records()
            elif self.decoder.buffered:
                raise ProtocolError(
                    f"connection closed inside a frame ({self.decoder.buffered} bytes pending)"
                )
            elif self.job_id is None:
                raise ProtocolError("connection closed before hello")
        except ProtocolError as exc:
            self.reject(str(exc))
        # e.g. a master-side logging filter raising: drop this peer only, keep serving the rest
        except Exception as exc:  # noqa: BLE001
            self.reject(f"internal error handling its frames: {exc!r}")
        if not data:
            self.close()

    def _on_message(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise ProtocolError("frame after the connection was refused")
        kind = message.get("type")
        if kind == MSG_LOG and self.records is not None:
            self._counted += 1
            made = self.records.make(parse_log_record(message))
            if made is not None:
                self.shared.emitter.add(made[0], made[1], self)
        elif self.job is None:
            self._authenticate(message)
        elif kind == MSG_HELLO:
            raise ProtocolError("second hello on one connection")
        else:
            assert self.job_id is not None
            self.shared.emitter.flush()  # the node's records before what answers it
            self.shared.exchange.handle(self.job_id, message,
                                        lambda reply: self.shared.send(self, reply))

    def _count_records(self) -> None:
        if self._counted and self.job is not None:
            self.shared.table.count_record(self.job, self._counted)
        self._counted = 0

    def _authenticate(self, message: dict[str, Any]) -> None:
        if message.get("type") != MSG_HELLO:
            raise ProtocolError(f"first frame is {str(message.get('type'))[:40]!r}, not hello")
        job_id, token = parse_hello(message)
        job = self.shared.table.admit(job_id, token, self)
        self.job_id, self.job, self.host = job_id, job, job.host
        self.records = RecordMaker(host=job.host, job_id=job_id,
                                   recipe_name=self.shared.recipe_name)
        self.decoder.max_bytes = self.shared.max_message_bytes
        logger.debug("log connection from %s is job %d on %s", self.peer, job_id, self.host)

    # --- replies ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` behind what is not sent yet, and send what the socket takes now."""
        if self.closed:
            return
        self.outbox += data
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now; watch for writability while anything is left."""
        try:
            sent = self.sock.send(self.outbox) if self.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.reject(f"cannot send a reply: {exc}")
            return
        del self.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbox else 0)
        selector = self.shared.selector
        if selector.get_key(self.sock).events != events:
            selector.modify(self.sock, events, self)

    # --- closing ---------------------------------------------------------------------------------

    def reject(self, reason: str) -> None:
        """Log the one warning for a misbehaving connection, then close it."""
        if self.closed:
            return
        self.shared.emitter.flush()  # its good records first, then why it was closed
        if self.job_id is not None:
            logger.warning("log connection from %s (job %d on %s) closed: %s",
                           self.peer, self.job_id, self.host, reason)
        else:
            self.shared.refusals.note(f"log connection from {self.peer} closed: {reason}")
        self.close()

    def abandon(self) -> None:
        """Close at the server's stop; warn (naming the job) of what its node sent unread."""
        if self.closed:
            return
        if self.job_id is not None:
            unread, records = self._unread()
            if unread:
                logger.warning(
                    "log channel of job %d on %s closed with the run: %d bytes it sent (about "
                    "%d records) were never read; they are lost", self.job_id, self.host,
                    unread, records)
        self.close()

    def _unread(self) -> tuple[int, int]:
        """Bytes received but not handled, and how many whole records they hold (counted from
        the frame headers, never decoded)."""
        pending = bytearray(self.decoder.pending())
        while len(pending) < _MAX_UNREAD_COUNTED:
            try:
                chunk = self.sock.recv(_RECV_BYTES)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
        return len(pending), count_frames(pending)

    def close(self) -> None:
        """Close the socket and drop it from its job's open set; safe to call twice."""
        if self.closed:
            return
        self.shared.emitter.flush()  # what it sent is emitted before its waiters are woken
        self._count_records()
        self.closed = True
        self.shared.selector.unregister(self.sock)
        self.sock.close()
        if self.job is not None:
            self.shared.table.release(self.job, self)

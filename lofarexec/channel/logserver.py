"""The master's end of the job channel: one TCP log receiver per run.

Node scripts connect back to the address the recipe gave them, prove which job they are with the
job's token, and stream their log records, which are re-emitted into the master's logging::

    node (job 7 on lce001)                 LogServer thread (one, selectors loop)
    ----------------------                 --------------------------------------
    connect ──────────────────────────────> accept, non-blocking, hello deadline
    hello(7, token) ──────────────────────> compare_digest(token, register_job(7) token)
    log{name, levelno, msg, ...} ─────────> validate, force name under node.lce001.*
                                                 └─> logging.getLogger(name).handle(record)
    shutdown(WR), wait for EOF <─────────── EOF seen: close; job 7's open count -1, notify

A connection that misbehaves (junk, oversized header, wrong token, silence past
``hello_timeout``) is closed with one warning on ``lofarexec.channel.logserver``; others are unaffected.
Because the node waits for the server to close before it exits, by the time the master sees the
node's process end its records have been emitted; :meth:`LogServer.wait_job_closed` covers
nodes that do not wait.
"""

from __future__ import annotations

import collections
import hmac
import logging
import secrets
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    MSG_HELLO,
    MSG_LOG,
    FrameDecoder,
    encode_frame,
    parse_hello,
    parse_log_record,
)
from lofarexec.channel.records import reemit
from lofarexec.errors import ProtocolError

logger = logging.getLogger("lofarexec.channel.logserver")

_RECV_BYTES = 1 << 16
#: Frame size allowed after authentication: a node's outputs may be large; a stranger's not.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
# The part of a node's logger name kept after node.<host>.: dotted identifiers only.


@dataclass
class _Job:
    host: str
    token: str
    records: int = 0
    exited: bool = False
    # The authenticated connections now open; a set, so closing one twice cannot miscount.
    connections: set[_Connection] = field(default_factory=set)


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    peer: str
    decoder: FrameDecoder
    deadline: float
    job_id: int | None = None
    job: _Job | None = None
    host: str = ""
    closed: bool = False
    outbox: bytearray = field(default_factory=bytearray)


class LogServer:
    """Receives the log records of one run's node scripts and re-emits them in this process.

    Start it before the first job is launched, tell each node :attr:`address`, and give each job
    the token from :meth:`register_job`. After a node's process has ended call :meth:`job_exited`
    and :meth:`wait_job_closed`, so that its last records appear before the recipe reports.
    """

    def __init__(
        self,
        *,
        bind_address: str = "127.0.0.1",
        advertise_address: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        hello_timeout: float = 10.0,
        recipe_name: str = "pipeline",
        exchange: JobExchange | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.exchange = exchange if exchange is not None else JobExchange()
        """Answers the frames that are not log records (arguments, outputs, values)."""
        self.max_message_bytes = max_message_bytes
        """The frame size allowed once a connection has authenticated (outputs can be big)."""
        self._outbound: collections.deque[tuple[_Connection, bytes]] = collections.deque()
        self.bind_address = bind_address
        self.advertise_address = advertise_address
        self.max_frame_bytes = max_frame_bytes
        self.hello_timeout = hello_timeout
        self.recipe_name = recipe_name
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[int, _Job] = {}
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = False
        self._selector: selectors.BaseSelector | None = None  # the serving thread's only

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind an ephemeral port on ``bind_address`` and start serving in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("LogServer already started")
        family = socket.getaddrinfo(self.bind_address or None, 0, type=socket.SOCK_STREAM)[0][0]
        self._listener = socket.create_server((self.bind_address, 0), family=family, backlog=128)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._serve, name="lofarexec-logserver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close every connection and the port, and join the thread. Safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        if not self._stopping:
            self._stopping = True
            assert self._wake_w is not None
            try:
                self._wake_w.send(b"x")
            except OSError:  # the loop already ended (it closes the wake-up pair on its way out)
                pass
        thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to hand to nodes: the advertise address, else the bound one."""
        if self._listener is None:
            raise RuntimeError("LogServer not started")
        bound_host, port = self._listener.getsockname()[:2]
        host = self.advertise_address or bound_host
        if host in _WILDCARD_HOSTS:
            host = socket.gethostname()  # a wildcard cannot be connected to from elsewhere
        return host, port

    # --- jobs (any thread) -------------------------------------------------------------------

    def register_job(self, job_id: int, host: str) -> str:
        """Allow job ``job_id`` on ``host`` to connect; return its fresh secret token.

        Registering again (a retry) issues a new token and clears the exited mark; counters
        accumulate over attempts.
        """
        token = secrets.token_hex(16)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                self._jobs[job_id] = _Job(host=host, token=token)
            else:
                job.host, job.token, job.exited = host, token, False
        return token

    def forget_job(self, job_id: int) -> None:
        """Drop a finished job: its token stops working, and a connection of it still open is
        closed (with a warning) at its next frame."""
        with self._lock:
            self._jobs.pop(job_id, None)
            self._changed.notify_all()

    def job_exited(self, job_id: int) -> None:
        """Record that the job's process has ended, so waiting no longer expects a connection."""
        with self._lock:
            self._job(job_id).exited = True
            self._changed.notify_all()

    def records_received(self, job_id: int) -> int:
        """How many log records the job has sent so far (over all its connections)."""
        with self._lock:
            return self._job(job_id).records

    def wait_job_closed(self, job_id: int, timeout: float | None) -> bool:
        """Block until the job has exited (:meth:`job_exited`) and none of its connections is
        open; return False if ``timeout`` seconds pass first, or the job is forgotten."""
        with self._lock:
            job = self._job(job_id)  # KeyError now rather than a silent wait

            def settled() -> bool:
                forgotten = self._jobs.get(job_id) is not job
                return forgotten or (job.exited and not job.connections)

            return self._changed.wait_for(settled, timeout) and self._jobs.get(job_id) is job

    def _job(self, job_id: int) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"job {job_id} is not registered with the log server") from None

    # --- the serving thread ------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        self._selector = selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        # Hello deadlines are accept time + a constant, so they expire in accept order.
        awaiting_hello: collections.deque[_Connection] = collections.deque()
        try:
            while not self._stopping:
                timeout = self._expire_hellos(awaiting_hello)
                for key, events in selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(awaiting_hello)
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                        self._send_queued()
                    else:
                        if events & selectors.EVENT_WRITE:
                            self._flush(key.data)
                        if events & selectors.EVENT_READ:
                            self._on_readable(key.data)
        except Exception:  # a bug here must not pass silently: nodes would log to nowhere
            logger.exception("log server stopped by an internal error")
        finally:
            self._close_all()

    def _expire_hellos(self, awaiting: collections.deque[_Connection]) -> float | None:
        """Close connections silent past their deadline; return seconds to the next deadline."""
        now = time.monotonic()
        while awaiting:
            conn = awaiting[0]
            if conn.closed or conn.job_id is not None:
                awaiting.popleft()
            elif conn.deadline <= now:
                awaiting.popleft()
                self._reject(conn, f"no hello within {self.hello_timeout:g} s")
            else:
                return conn.deadline - now
        return None

    def _accept(self, awaiting: collections.deque[_Connection]) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
                logger.warning("log server cannot accept a connection: %s", exc)
                return
            sock.setblocking(False)
            conn = _Connection(
                sock=sock,
                peer=f"{peer[0]}:{peer[1]}",
                decoder=FrameDecoder(self.max_frame_bytes),
                deadline=time.monotonic() + self.hello_timeout,
            )
            self._selector.register(sock, selectors.EVENT_READ, conn)
            awaiting.append(conn)

    def _on_readable(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            if conn.job_id is None:
                self._reject(conn, f"connection error before hello: {exc}")
        try:
            if data:
                for message in conn.decoder.feed_iter(data):
                    self._on_message(conn, message)
            elif conn.decoder.buffered:
                raise ProtocolError(
                    f"connection closed inside a frame ({conn.decoder.buffered} bytes pending)"
                )
            elif conn.job_id is None:
                raise ProtocolError("connection closed before hello")
        except ProtocolError as exc:
            self._reject(conn, str(exc))
        # e.g. a master-side logging filter raising: drop this peer only, keep serving the rest
        except Exception as exc:  # noqa: BLE001
            self._reject(conn, f"internal error handling its frames: {exc!r}")
        if not data:
            self._close(conn)

    def _on_message(self, conn: _Connection, message: dict[str, Any]) -> None:
        if conn.closed:
            raise ProtocolError("frame after the connection was refused")
        if conn.job_id is None:
            self._authenticate(conn, message)
        elif message.get("type") == MSG_HELLO:
            raise ProtocolError("second hello on one connection")
        elif message.get("type") == MSG_LOG:
            self._emit(conn, parse_log_record(message))
        else:
            assert conn.job_id is not None
            self.exchange.handle(conn.job_id, message, lambda reply: self._send(conn, reply))

    def _authenticate(self, conn: _Connection, message: dict[str, Any]) -> None:
        if message.get("type") != MSG_HELLO:
            raise ProtocolError(f"first frame is {str(message.get('type'))[:40]!r}, not hello")
        job_id, token = parse_hello(message)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ProtocolError(f"hello for unknown job {job_id}")
            if not hmac.compare_digest(token.encode("utf-8"), job.token.encode("utf-8")):
                raise ProtocolError(f"wrong token for job {job_id} on {job.host}")
            job.connections.add(conn)
            conn.job_id, conn.job, conn.host = job_id, job, job.host
        conn.decoder.max_bytes = self.max_message_bytes
        logger.debug("log connection from %s is job %d on %s", conn.peer, job_id, conn.host)

    def _emit(self, conn: _Connection, fields: dict[str, Any]) -> None:
        with self._lock:
            job_id, job = conn.job_id, conn.job
            if job is None or job_id is None or self._jobs.get(job_id) is not job:
                raise ProtocolError(f"job {conn.job_id} is no longer registered")
            job.records += 1
        reemit(fields, host=conn.host, job_id=job_id, recipe_name=self.recipe_name)

    # --- replies -----------------------------------------------------------------------------

    def _send(self, conn: _Connection, message: dict[str, Any]) -> None:
        """Send a reply; from another thread (a deferred reply) it is queued for the server's."""
        data = encode_frame(message, max_bytes=self.max_message_bytes)
        if threading.current_thread() is self._thread:
            self._write(conn, data)
        else:
            self._outbound.append((conn, data))
            assert self._wake_w is not None
            try:
                self._wake_w.send(b"r")
            except OSError:  # stopping: the connection is being closed anyway
                pass

    def _send_queued(self) -> None:
        while self._outbound:
            self._write(*self._outbound.popleft())

    def _write(self, conn: _Connection, data: bytes) -> None:
        if conn.closed:
            return
        conn.outbox += data
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        """Send what the socket takes now; watch for writability while anything is left."""
        assert self._selector is not None
        try:
            sent = conn.sock.send(conn.outbox) if conn.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._reject(conn, f"cannot send a reply: {exc}")
            return
        del conn.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        if self._selector.get_key(conn.sock).events != events:
            self._selector.modify(conn.sock, events, conn)

    # --- closing -----------------------------------------------------------------------------

    def _reject(self, conn: _Connection, reason: str) -> None:
        """Log the one warning for a misbehaving connection, then close it."""
        if conn.closed:
            return
        who = f" (job {conn.job_id} on {conn.host})" if conn.job_id is not None else ""
        logger.warning("log connection from %s%s closed: %s", conn.peer, who, reason)
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        """Close the socket and drop it from its job's open set; safe to call twice."""
        if conn.closed:
            return
        conn.closed = True
        assert self._selector is not None
        self._selector.unregister(conn.sock)
        conn.sock.close()
        if conn.job is not None:
            with self._lock:
                conn.job.connections.discard(conn)
                self._changed.notify_all()

    def _close_all(self) -> None:
        assert self._selector is not None and self._wake_w is not None
        for key in list(self._selector.get_map().values()):
            if isinstance(key.data, _Connection):
                self._close(key.data)
            else:
                self._selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._wake_w.close()

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
``hello_timeout``) is closed with one warning on ``lofarexec.channel.logserver`` (the first ten;
then at debug level); others are unaffected. Before its hello a connection may send at most
:data:`MAX_HELLO_BYTES`, and at most :data:`MAX_UNAUTHENTICATED` such connections are held: a
new one beyond that closes the oldest (after reading what it sent), so strangers cannot starve
the port. Out of file descriptors, accepting pauses and retries, with one warning.

Because the node waits for the server to close before it exits, by the time the master sees
the node's process end its records have usually been emitted; :meth:`LogServer.wait_job_closed`
and :meth:`LogServer.bytes_received` let the runner wait for the rest while it still arrives.
At a stop, a connection still open is closed with a warning counting what it sent unread.

This module owns the port, the serving thread and the job table's public face;
:mod:`~lofarexec.channel.connection` handles each connection's frames and
:mod:`~lofarexec.channel.jobtable` the tokens.
"""

from __future__ import annotations

import collections
import errno
import logging
import resource
import selectors
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

from lofarexec.channel.connection import NodeConnection, Shared
from lofarexec.channel.emitter import BatchEmitter
from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.jobtable import LATE_HELLO_SECONDS, JobTable
from lofarexec.channel.protocol import FrameDecoder, encode_frame

logger = logging.getLogger("lofarexec.channel.logserver")

#: Frame size allowed after authentication (``[logging] max_message_mib``): outputs may be big.
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
#: What a connection may send before its hello is accepted: a hello is about 100 bytes.
MAX_HELLO_BYTES = 4096
#: Seconds a new connection has to say hello (a node sends it right after connecting).
HELLO_TIMEOUT = 5.0
#: Connections without an accepted hello held at once; a new one beyond closes the oldest.
MAX_UNAUTHENTICATED = 64
#: Out of descriptors, accepting pauses this long at first, doubling up to ``_MAX_PAUSE``.
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 2.0
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class LogServer:
    """Receives the log records of one run's node scripts and re-emits them in this process.

    Start it before the first job is launched, tell each node :attr:`address`, and give each job
    the token from :meth:`register_job`. After a node's process has ended call :meth:`job_exited`
    and :meth:`wait_job_closed`, so that its last records appear before the recipe reports; once
    the job is final, :meth:`forget_job` retires its token.
    """

    def __init__(
        self,
        *,
        bind_address: str = "127.0.0.1",
        advertise_address: str | None = None,
        max_frame_bytes: int = MAX_HELLO_BYTES,
        hello_timeout: float = HELLO_TIMEOUT,
        recipe_name: str = "pipeline",
        exchange: JobExchange | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_unauthenticated: int = MAX_UNAUTHENTICATED,
        late_hello_seconds: float = LATE_HELLO_SECONDS,
    ) -> None:
        self.exchange = exchange if exchange is not None else JobExchange()
        """Answers the frames that are not log records (arguments, outputs, values)."""
        self.max_message_bytes = max_message_bytes
        """The frame size allowed once a connection has authenticated (outputs can be big)."""
        self._outbound: collections.deque[tuple[NodeConnection, bytes]] = collections.deque()
        self.bind_address = bind_address
        self.advertise_address = advertise_address
        self.max_frame_bytes = max_frame_bytes
        """The frame size allowed before a connection's hello is accepted."""
        self.max_unauthenticated = max_unauthenticated
        self.hello_timeout = hello_timeout
        self._awaiting: collections.deque[NodeConnection] = collections.deque()
        self._accept_resumes: float | None = None  # paused, out of descriptors, until then
        self._pause = _FIRST_PAUSE
        self._told_descriptors = False
        self.recipe_name = recipe_name
        self._table = JobTable()
        self._table.late_hello_seconds = late_hello_seconds
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = False
        self._shared: Shared | None = None  # made by start(), with the selector

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind an ephemeral port on ``bind_address`` and start serving in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("LogServer already started")
        family = _address_family(self.bind_address)
        self._listener = socket.create_server((self.bind_address, 0), family=family, backlog=128)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        # Made here, not in the thread: out of descriptors, start() fails instead of the thread.
        selector = selectors.DefaultSelector()
        self._shared = Shared(selector=selector, table=self._table, exchange=self.exchange,
                              recipe_name=self.recipe_name,
                              max_message_bytes=self.max_message_bytes, send=self._send,
                              emitter=BatchEmitter(_refuse_after_error))
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
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
        return self._table.register(job_id, host)

    def forget_job(self, job_id: int) -> None:
        """Retire a final job: its token is refused for new connections from now on.

        Safe at any time: twice, for an id never registered, and while a connection of the job
        is still open - that connection is served until the node closes it, so records it
        already sent are still emitted. Afterwards the job is unknown here (KeyError from the
        other job methods) and a :meth:`wait_job_closed` in progress returns False.
        """
        self._table.forget(job_id)

    def job_exited(self, job_id: int) -> None:
        """Record that the job's process has ended, so waiting no longer expects a connection."""
        self._table.mark_exited(job_id)

    def job_ended(self, job_id: int) -> tuple[bool, bool]:
        """:meth:`job_exited`, then :meth:`forget_job` if the node was heard from and its
        channel is closed (the usual case: a node closes before it exits); a job unheard, or
        whose channel closed empty, is forgotten a moment later (a late hello may be on its
        way: see :mod:`~lofarexec.channel.jobtable`). Returns (whether it said hello, whether
        it was forgotten now): the runner's one call per job that ends."""
        return self._table.end(job_id)

    def ended_jobs(self) -> list[int]:
        """The jobs that have ended and are still known here (a channel open, a hello due):
        those a batch's end waits for (:meth:`wait_job_closed`)."""
        return self._table.ended()

    def records_received(self, job_id: int) -> int:
        """How many log records the job has sent so far (over all its connections)."""
        return self._table.records(job_id)

    def said_hello(self, job_id: int) -> bool:
        """Whether the job's current attempt has connected and been admitted: a lofarexec node
        that ends without it could not reach this server (see ``find_unreached``)."""
        return self._table.said_hello(job_id)

    def bytes_received(self, job_id: int) -> int:
        """How many bytes the job's authenticated connections have delivered so far: while this
        grows, the job's channel is still draining."""
        return self._table.received_bytes(job_id)

    def unauthenticated(self) -> tuple[int, int]:
        """Connections now waiting for their hello, and the bytes held for them (a measure)."""
        waiting = [conn for conn in list(self._awaiting) if conn.job is None and not conn.closed]
        return len(waiting), sum(conn.decoder.buffered for conn in waiting)

    def wait_job_closed(self, job_id: int, timeout: float | None) -> bool:
        """Block until the job has exited (:meth:`job_exited`) and none of its connections is
        open; return False if ``timeout`` seconds pass first, or the job is forgotten."""
        return self._table.wait_closed(job_id, timeout)

    # --- the serving thread ------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        assert self._shared is not None
        selector = self._shared.selector
        # Hello deadlines are accept time + a constant, so they expire in accept order.
        awaiting_hello = self._awaiting
        try:
            while not self._stopping:
                timeout = self._expire_hellos(awaiting_hello)
                timeout = self._resume_accepting(timeout)
                for key, events in selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept(awaiting_hello)
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                        self._send_queued()
                    else:
                        if events & selectors.EVENT_WRITE:
                            key.data.flush()
                        if events & selectors.EVENT_READ:
                            key.data.on_readable()
                # One write per handler for the turn's records, before waiting again.
                self._shared.emitter.flush()
        except Exception:  # a bug here must not pass silently: nodes would log to nowhere
            logger.exception("log server stopped by an internal error")
        finally:
            self._close_all(selector)

    def _expire_hellos(self, awaiting: collections.deque[NodeConnection]) -> float | None:
        """Close connections silent past their deadline; return seconds to the next deadline."""
        now = time.monotonic()
        while awaiting:
            conn = awaiting[0]
            if conn.closed or conn.job_id is not None:
                awaiting.popleft()
            elif conn.deadline <= now:
                awaiting.popleft()
                conn.reject(f"no hello within {self.hello_timeout:g} s")
            else:
                return conn.deadline - now
        return None

    def _accept(self, awaiting: collections.deque[NodeConnection]) -> None:
        assert self._listener is not None and self._shared is not None
        for _ in range(self.max_unauthenticated):  # then serve the reads: hellos get in
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(exc)
                else:
                    logger.warning("log server cannot accept a connection: %s", exc)
                return
            self._pause = _FIRST_PAUSE
            self._make_room(awaiting)
            sock.setblocking(False)
            conn = NodeConnection(
                sock=sock,
                peer=f"{peer[0]}:{peer[1]}",
                decoder=FrameDecoder(self.max_frame_bytes),
                deadline=time.monotonic() + self.hello_timeout,
                shared=self._shared,
            )
            self._shared.selector.register(sock, selectors.EVENT_READ, conn)
            awaiting.append(conn)

    def _make_room(self, awaiting: collections.deque[NodeConnection]) -> None:
        """Keep fewer than ``max_unauthenticated`` connections without hello: close the oldest,
        after one last read of what it sent (a node's hello comes right after its connect)."""
        if len(awaiting) < self.max_unauthenticated:
            return
        live = [conn for conn in awaiting if conn.job is None and not conn.closed]
        awaiting.clear()
        awaiting.extend(live)
        while len(awaiting) >= self.max_unauthenticated:
            oldest = awaiting.popleft()
            oldest.on_readable()
            if oldest.job is None:
                oldest.reject(f"more than {self.max_unauthenticated} connections without hello")

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: stop watching the port for a while (no busy loop), say so once."""
        assert self._listener is not None and self._shared is not None
        self._shared.selector.unregister(self._listener)
        self._accept_resumes = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, _MAX_PAUSE)
        if self._told_descriptors:
            return
        self._told_descriptors = True
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = soft + max(self._table.waiting_count(), 1)
        logger.warning(
            "log server cannot accept node connections: %s (open files limit %d, hard limit "
            "%s); it retries as descriptors free up. This run needs at least %d: raise the "
            "limit (ulimit -n) or lower [remote] max_per_node", exc.strerror, soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard, needed)

    def _resume_accepting(self, timeout: float | None) -> float | None:
        """Watch the port again once the pause is over; the select timeout, shortened to it."""
        if self._accept_resumes is None:
            return timeout
        left = self._accept_resumes - time.monotonic()
        if left > 0:
            return left if timeout is None else min(timeout, left)
        assert self._listener is not None and self._shared is not None
        self._accept_resumes = None
        self._shared.selector.register(self._listener, selectors.EVENT_READ, None)
        return timeout

    def _send(self, conn: NodeConnection, message: dict[str, Any]) -> None:
        """Send a reply; from another thread (a deferred reply) it is queued for the server's."""
        data = encode_frame(message, max_bytes=self.max_message_bytes)
        if threading.current_thread() is self._thread:
            conn.write(data)
        else:
            self._outbound.append((conn, data))
            assert self._wake_w is not None
            try:
                self._wake_w.send(b"r")
            except OSError:  # stopping: the connection is being closed anyway
                pass

    def _send_queued(self) -> None:
        while self._outbound:
            conn, data = self._outbound.popleft()
            conn.write(data)

    def _close_all(self, selector: selectors.BaseSelector) -> None:
        assert self._wake_w is not None and self._shared is not None
        self._shared.emitter.flush()
        if self._accept_resumes is not None and self._listener is not None:
            self._listener.close()  # paused: not in the selector
        for key in list(selector.get_map().values()):
            if isinstance(key.data, NodeConnection):
                key.data.abandon()
            else:
                selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
        self._wake_w.close()


def _refuse_after_error(owner: object, exc: Exception) -> None:
    assert isinstance(owner, NodeConnection)
    owner.refuse_after_error(exc)


def _address_family(address: str | None) -> int:
    """The socket family to bind ``address`` with: a numeric address's without a lookup (a
    lookup of a text address loads the idna codec, ~1 ms on a recipe's way to its first job:
    issue 17), a name's (or no address's) from ``getaddrinfo``."""
    if address:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, address)
            except OSError:
                continue
            return family
    return socket.getaddrinfo(address or None, 0, type=socket.SOCK_STREAM)[0][0]

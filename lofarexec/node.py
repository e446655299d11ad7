"""The node side: what a node script subclasses to run on a compute host and log to the master.

A node script is started as ``<command> <loghost> <logport> <args...>`` and does, exactly as in
the seed::

    sys.exit(MyNode(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))

:meth:`LOFARnode.run_with_logging` connects back to the run's log server, proves which job it is
with the token it was given (environment or first line of standard input, never the command
line), and sends every record of ``self.logger`` there. If there is no token (the script was run
by hand) or the master cannot be reached, the records go to standard error instead: the work is
never lost for want of a log channel.

This module must import on a bare compute node: standard library,
:mod:`lofarexec.channel.protocol` and :mod:`lofarexec.errors` only.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
from collections.abc import Callable, Sequence

from lofarexec.channel.protocol import (
    ENV_HOST,
    ENV_JOB_DIRECTORY,
    ENV_JOB_ID,
    ENV_NODE_ARGUMENTS,
    ENV_TOKEN,
    ENV_TOKEN_STDIN,
    NODE_UNREACHED,
    encode_frame,
    hello,
    log_record,
    read_frame,
)
from lofarexec.errors import ProtocolError, WaitTimeout

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms in every node (issue 17)
if TYPE_CHECKING:
    from typing import Any

CONNECT_TIMEOUT = 10.0
#: How long one send may block on a stalled master before the node gives up on the channel.
SEND_TIMEOUT = 60.0
#: How long closing waits for the master to confirm it has read everything.
CLOSE_TIMEOUT = 10.0
STDERR_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
STDERR_DATEFMT = "%Y-%m-%d %H:%M:%S"
_MAX_TOKEN_LINE = 1024
#: Replies come from the master we authenticated against: they may be large (arguments).
_MAX_REPLY_BYTES = 1 << 30


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(STDERR_FORMAT, STDERR_DATEFMT))
    return handler


def _say(text: str) -> None:
    """One line to standard error, for problems with the log channel itself."""
    print(f"lofarexec.node: {text}", file=sys.stderr, flush=True)


_STORED_HINT = ("a run starts such nodes when pipeline.cfg has '[remote] node_arguments = "
                "stored' (or the job has store_arguments=True)")
_COMMAND_LINE_HINT = ("remove '[remote] node_arguments = stored' from pipeline.cfg (or create "
                      "the job with store_arguments=False)")


def _stop_if_started_otherwise(name: str, expected: str) -> None:
    """Exit at once, with one line, when the run passed the arguments the other way.

    A node never runs with arguments meant for the other convention (a job id taken for a log
    host, a log port taken for a file name). Run by hand (no run's variable), nothing is checked.
    """
    given = os.environ.pop(ENV_NODE_ARGUMENTS, None)  # the node's own programs are not nodes
    if given is None or given == expected:
        return
    if expected == "stored":
        raise SystemExit(f"lofarexec.node: {name} fetches its arguments "
                         "(run_with_stored_arguments), but this run passed them on the command "
                         f"line; set '[remote] node_arguments = stored' in pipeline.cfg")
    raise SystemExit(f"lofarexec.node: {name} takes its arguments from the command line "
                     f"(run_with_logging), but this run stored them; {_COMMAND_LINE_HINT}")


def _read_token_line() -> str:
    """The first line of standard input, read byte by byte so nothing after it is consumed.

    Whatever follows the token stays on file descriptor 0 for ``run()`` and its children.
    """
    if sys.stdin is None:
        return ""
    fd = sys.stdin.fileno()
    line = bytearray()
    while len(line) < _MAX_TOKEN_LINE:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        line += byte
    return line.decode("ascii", "replace").strip()


def read_credentials() -> tuple[int, str] | None:
    """The job id and token this process was given, or None when it was not started by a run.

    The token is removed from the environment so that programs the node starts do not inherit it.
    """
    if os.environ.get(ENV_TOKEN_STDIN) == "1":
        token = _read_token_line()
    else:
        token = os.environ.pop(ENV_TOKEN, "")
    job_id = os.environ.get(ENV_JOB_ID, "")
    if not token or not job_id:
        return None
    try:
        return int(job_id), token
    except ValueError:
        _say(f"{ENV_JOB_ID}={job_id!r} is not a job number; logging to stderr")
        return None


class _ChannelHandler(logging.Handler):
    """Sends each record as one ``log`` frame; on the first send failure, falls back to stderr.

    ``logging.Handler.handle`` holds the handler lock around :meth:`emit`, so frames from
    several threads never interleave on the socket.
    """

    def __init__(self, sock: socket.socket | None, peer: str) -> None:
        super().__init__()
        self._sock = sock
        self._peer = peer
        self._reply_lock = threading.Lock()  # one request awaiting its reply at a time
        self._fallback = _stderr_handler()
        # A child forked by run() inherits this handler; its frames would interleave with ours
        # on the shared socket, so only the process that connected may use it.
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = encode_frame(log_record(record))
        except (ProtocolError, TypeError, ValueError):  # e.g. a bad %-format in the message
            self.handleError(record)
            return
        if self._sock is not None and os.getpid() == self._pid:
            try:
                self._sock.sendall(frame)
                return
            except OSError as exc:
                _say(f"lost the log channel to {self._peer} ({exc}); logging to stderr")
                self._drop_socket()
        self._fallback.handle(record)

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a request on the channel and wait for the master's reply.

        Log records from other threads keep flowing meanwhile (only the send takes the handler
        lock). Raises :class:`ProtocolError` without a channel, on a lost one, or on an error
        reply; :class:`WaitTimeout` (a TimeoutError) when no reply comes within ``timeout``
        seconds.
        """
        with self._reply_lock:
            sock = self._sock
            if sock is None or os.getpid() != self._pid:
                raise ProtocolError("no channel to the master (the script was not started by a "
                                    "run, or the channel was lost)")
            frame = encode_frame(message, max_bytes=_MAX_REPLY_BYTES)
            self.acquire()
            try:
                sock.sendall(frame)
            except OSError as exc:
                raise ProtocolError(f"lost the channel to {self._peer}: {exc}") from None
            finally:
                self.release()
            if timeout is not None and not select.select([sock], [], [], timeout)[0]:
                raise WaitTimeout(f"no reply from the master within {timeout} s")
            try:
                reply = read_frame(sock, max_bytes=_MAX_REPLY_BYTES)
            except (OSError, EOFError) as exc:
                raise ProtocolError(f"lost the channel to {self._peer}: {exc}") from None
        if reply.get("type") == "error":
            raise ProtocolError(str(reply.get("message")))
        return reply

    def close(self) -> None:
        """Flush and close the channel, waiting until the master has read every record."""
        self.acquire()
        try:
            sock, self._sock = self._sock, None
            if sock is not None and os.getpid() == self._pid:
                _close_gracefully(sock)
            elif sock is not None:
                sock.close()  # a forked child's copy: closing it leaves the parent's open
            self._fallback.close()
        finally:
            self.release()
        super().close()

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _close_gracefully(sock: socket.socket) -> None:
    """Half-close, then wait for the master's EOF: it closes only after reading all we sent.

    So when the node process exits, its records have already been emitted on the master.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(CLOSE_TIMEOUT)
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def _connect(host: str, port: int, job_id: int, token: str) -> socket.socket | None:
    """Open the log channel and say hello; None (reported once on stderr) when that fails."""
    try:
        # an ASCII name as bytes: a str goes through the idna codec (which imports stringprep
        # and unicodedata, ~1 ms of every node's start) to reach the same bytes
        name = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((name, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        _say(f"cannot reach the log server at {host}:{port} ({exc}); logging to stderr")
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(SEND_TIMEOUT)
        sock.sendall(encode_frame(hello(job_id, token)))
    except OSError as exc:
        sock.close()
        _say(f"cannot say hello to the log server at {host}:{port} ({exc}); logging to stderr")
        return None
    return sock


class LOFARnode:
    """Base class of node scripts: override :meth:`run`, call :meth:`run_with_logging`.

    ``self.logger`` is named ``node.<host>.<ClassName>`` (``<host>`` as the recipe named it, or
    this machine's name when run by hand); ``self.outputs`` is a dict a node may fill for the
    master; ``self.environment`` is ``os.environ`` itself (as the later framework had it), so
    ``self.environment.update(...)`` reaches the programs the node starts.
    """

    #: How this class of node gets its arguments (``ENV_NODE_ARGUMENTS``'s values).
    argument_mode = "command_line"

    def __init__(self, loghost: str, logport: int | str) -> None:
        _stop_if_started_otherwise(type(self).__name__, self.argument_mode)
        self.loghost = loghost
        self.logport = int(logport)
        self.outputs: dict[str, Any] = {}
        self.environment = os.environ
        host = os.environ.get(ENV_HOST) or socket.gethostname()
        self.logger = logging.getLogger(f"node.{host}.{type(self).__name__}")
        # The records go to our own handler only; propagating would print them twice.
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def run(self, *args: str) -> int | None:
        """Do the job's work with the arguments the recipe gave; return the exit code."""
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def run_with_logging(self, *args: str) -> int:
        """Run :meth:`run` with ``self.logger`` sent to the master; return the exit code.

        An exception escaping ``run()`` is logged with its traceback and gives exit code 1. If
        ``run()`` filled ``self.outputs``, they are delivered to the master and acknowledged
        before this returns; a delivery that fails turns success into exit code 1. The channel
        is flushed and closed before this returns.
        """
        return self._session(lambda: args)

    def _session(self, arguments: Callable[[], Sequence[Any]]) -> int:
        credentials = read_credentials()
        sock = _connect(self.loghost, self.logport, *credentials) if credentials else None
        self._channel = handler = _ChannelHandler(sock, f"{self.loghost}:{self.logport}")
        self.logger.addHandler(handler)
        try:
            try:
                args = arguments()
            except (ProtocolError, TimeoutError) as exc:
                self.logger.error("cannot get this job's arguments: %s", exc)
                return 1
            code = self._run_guarded(tuple(args))
            return self._deliver_outputs(code) if self.outputs else code
        finally:
            self.logger.removeHandler(handler)
            handler.close()
            if credentials and sock is None:  # last on stderr: the runner reads it in the tail
                _say(NODE_UNREACHED.format(address=f"{self.loghost}:{self.logport}"))

    def _deliver_outputs(self, code: int) -> int:
        """Send ``self.outputs`` and wait for the master's acknowledgement."""
        try:
            self._channel.request({"type": "outputs", "outputs": self.outputs})
        except (ProtocolError, TimeoutError) as exc:
            self.logger.error("the outputs did not reach the master: %s", exc)
            return code or 1
        return code

    # -- the channel, for nodes that exchange more than logs ------------------------------------
    def publish(self, key: str, value: Any) -> None:
        """Put a JSON value on the run's board under ``key``, for other nodes and the master."""
        self._channel.request({"type": "put", "key": key, "value": value})

    def wait_for(self, key: str, timeout: float | None = None) -> Any:
        """The value under ``key`` on the run's board, waiting until someone publishes it."""
        return self._channel.request({"type": "get", "key": key}, timeout=timeout)["value"]

    @property
    def job_folder(self) -> str:
        """This job's own folder under the run's job directory (created on first use)."""
        directory, job_id = os.environ.get(ENV_JOB_DIRECTORY), os.environ.get(ENV_JOB_ID)
        if not directory or not job_id:
            raise ProtocolError(f"{ENV_JOB_DIRECTORY} is not set: the script was not started "
                                "by a run")
        folder = os.path.join(directory, "jobs", job_id)
        os.makedirs(folder, exist_ok=True)
        return folder

    def _run_guarded(self, args: tuple[str, ...]) -> int:
        try:
            code = self.run(*args)
        except Exception:
            self.logger.exception("%s.run() failed", type(self).__name__)
            return 1
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        self.logger.error("run() returned %r, not an exit code; exiting with 1", code)
        return 1


class LOFARnodeTCP(LOFARnode):
    """A node whose arguments are typed JSON values fetched from the master, not argv.

    The original framework's shape: the recipe creates the job with
    ``ComputeJob(host, command, arguments, store_arguments=True)``, the node is started as
    ``<command> <job id> <log host> <log port>`` and does::

        sys.exit(MyNode(sys.argv[1], sys.argv[2], sys.argv[3]).run_with_stored_arguments())

    so arguments of any size or structure never touch a command line. A run starts nodes so
    when ``pipeline.cfg`` has ``[remote] node_arguments = stored`` (or the job asks for it);
    started the seed's way, the node exits at once with one line saying so.
    """

    argument_mode = "stored"

    def __init__(self, job_id: int | str, loghost: str, logport: int | str) -> None:
        _stop_if_started_otherwise(type(self).__name__, self.argument_mode)
        try:
            self.job_id = int(job_id)
        except ValueError:
            raise SystemExit(f"lofarexec.node: {type(self).__name__} expects <job id> <log host> "
                             f"<log port> as its first arguments, not {job_id!r}; "
                             f"{_STORED_HINT}") from None
        super().__init__(loghost, logport)

    def run_with_stored_arguments(self) -> int:
        """Fetch the arguments over the channel, then run as :meth:`run_with_logging` does."""
        return self._session(self._fetch_arguments)

    def _fetch_arguments(self) -> list[Any]:
        reply = self._channel.request({"type": "get_arguments", "job_id": self.job_id})
        arguments = reply.get("arguments")
        if not isinstance(arguments, list):
            raise ProtocolError("the master's arguments are not a list")
        return arguments

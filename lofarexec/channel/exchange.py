"""The job channel's data side: typed arguments out, outputs back, values between processes.

The log server authenticates each node connection (job id + token) and hands every frame that
is not a log record to the run's :class:`JobExchange`, which answers it:

====================  ====================================  =================================
node sends            exchange does                         reply
====================  ====================================  =================================
``get_arguments``     looks up the job's stored arguments   ``arguments`` (any JSON values)
``outputs``           keeps the job's ``outputs`` dict      ``ack`` (after it is stored)
``put`` key, value    stores a run-wide value               ``ack``
``get`` key           waits until the key has a value       ``value`` (when it has one)
====================  ====================================  =================================

A frame for another job (``job_id`` differing from the connection's) is refused as forged.
Replies that must wait (``get``) are sent later through the ``send`` callback the server
registered. The master side (a recipe's controller thread) uses :meth:`put` and :meth:`get`
directly. Values are JSON: nothing received is unpickled or evaluated.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from lofarexec.errors import ProtocolError, WaitTimeout

Reply = Callable[[dict[str, Any]], None]
_MAX_KEY = 200
#: Default cap on the outputs and board values nodes may have stored at once (JSON bytes).
DEFAULT_MAX_KEPT_BYTES = 256 << 20


class JobExchange:
    """Stored arguments, received outputs and a run-wide key/value board for one run."""

    def __init__(self, max_kept_bytes: int = DEFAULT_MAX_KEPT_BYTES) -> None:
        self.max_kept_bytes = max_kept_bytes
        """What nodes may have stored here at once; a request past it gets an error reply."""
        self._kept: dict[tuple[str, str | int], int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._arguments: dict[int, list[Any]] = {}
        self._outputs: dict[int, dict[str, Any]] = {}
        self._board: dict[str, Any] = {}
        self._waiting: dict[str, list[Reply]] = {}
        self._closed = False

    def close(self) -> None:
        """The batch is over: master-side ``get`` calls waiting now or later raise at once."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    # -- master side ------------------------------------------------------------------------
    def store_arguments(self, job_id: int, arguments: list[Any]) -> None:
        """Keep ``arguments`` for the node of ``job_id`` to fetch."""
        with self._lock:
            self._arguments[job_id] = arguments

    def take_outputs(self, job_id: int) -> dict[str, Any] | None:
        """The outputs the node delivered (once), or None if it sent none."""
        with self._lock:
            self._arguments.pop(job_id, None)
            self._kept.pop(("outputs", job_id), None)
            return self._outputs.pop(job_id, None)

    def put(self, key: str, value: Any) -> None:
        """Publish ``value`` under ``key`` for nodes (and other master threads) to get."""
        with self._lock:
            self._board[key] = value
            waiting = self._waiting.pop(key, [])
            self._changed.notify_all()
        for reply in waiting:
            reply({"type": "value", "key": key, "value": value})

    def get(self, key: str, timeout: float | None = None) -> Any:
        """Wait for a value under ``key``; raise :class:`~lofarexec.errors.WaitTimeout` (a
        TimeoutError) after ``timeout`` seconds, and EOFError when the batch ends first (its
        nodes can no longer publish anything)."""
        with self._lock:
            if not self._changed.wait_for(lambda: key in self._board or self._closed, timeout):
                raise WaitTimeout(f"no value for {key!r} within {timeout} s")
            if key not in self._board:
                raise EOFError(f"the batch ended before anything was published under {key!r}")
            return self._board[key]

    # -- node side (called by the log server's thread) ----------------------------------------
    def handle(self, job_id: int, message: dict[str, Any], reply: Reply) -> None:
        """Answer one authenticated request of job ``job_id``; ProtocolError if it is bad."""
        claimed = message.get("job_id", job_id)
        if claimed != job_id:
            raise ProtocolError(f"forged frame: job {job_id} sent data for job {claimed!r}")
        kind = message.get("type")
        if kind == "get_arguments":
            reply(self._arguments_of(job_id))
        elif kind == "outputs":
            outputs = message.get("outputs")
            if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
                raise ProtocolError("outputs must be a JSON object with string keys")
            refusal = self._reserve(("outputs", job_id), outputs)
            if refusal is None:
                self._keep_outputs(job_id, outputs)
            reply(refusal or {"type": "ack"})
        elif kind == "put":
            key = _key(message)
            refusal = self._reserve(("board", key), message.get("value"))
            if refusal is None:
                self.put(key, message.get("value"))
            reply(refusal or {"type": "ack"})
        elif kind == "get":
            self._answer_get(_key(message), reply)
        else:
            raise ProtocolError(f"unknown frame type {str(kind)[:40]!r}")

    def _arguments_of(self, job_id: int) -> dict[str, Any]:
        with self._lock:
            if job_id not in self._arguments:
                return {"type": "error",
                        "message": f"job {job_id} has no stored arguments: the recipe must "
                                   "create it with ComputeJob(..., store_arguments=True)"}
            return {"type": "arguments", "arguments": self._arguments[job_id]}

    def _reserve(self, slot: tuple[str, str | int], value: object) -> dict[str, Any] | None:
        """Count ``value`` against :attr:`max_kept_bytes`; an error reply if it does not fit."""
        size = len(json.dumps(value, ensure_ascii=False))
        with self._lock:
            others = sum(self._kept.values()) - self._kept.get(slot, 0)
            if others + size > self.max_kept_bytes:
                return {"type": "error", "message": (
                    f"the master keeps at most {self.max_kept_bytes >> 20} MiB of node outputs "
                    f"and values at once ([logging] max_kept_mib); this {size}-byte one does not "
                    "fit: write large results to files and send their paths")}
            self._kept[slot] = size
        return None

    def _keep_outputs(self, job_id: int, outputs: dict[str, Any]) -> None:
        with self._lock:
            if job_id in self._outputs:
                raise ProtocolError(f"job {job_id} delivered its outputs twice")
            self._outputs[job_id] = outputs

    def _answer_get(self, key: str, reply: Reply) -> None:
        with self._lock:
            if key not in self._board:
                self._waiting.setdefault(key, []).append(reply)
                return
            value = self._board[key]
        reply({"type": "value", "key": key, "value": value})


def _key(message: dict[str, Any]) -> str:
    key = message.get("key")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise ProtocolError(f"a key must be a non-empty string of at most {_MAX_KEY} characters")
    return key

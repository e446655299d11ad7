"""Node records handed to the master's logging in batches: one write and flush per handler.

The log receiver makes many records per loop turn. Handing each to ``Logger.handle`` costs a
handler lock, a write and a flush per record and handler; :class:`BatchEmitter` keeps the
turn's records (at most :attr:`BatchEmitter.limit`) and, at :meth:`BatchEmitter.flush`, gives
each handler its share in order: a plain ``StreamHandler``/``FileHandler`` formats them all and
writes them with one ``write`` and one ``flush`` under its lock; any other handler gets
``handle(record)`` per record, as ``Logger.callHandlers`` would call it. Logger levels and
filters, handler levels and filters, propagation and logging's last resort behave as in
``Logger.handle``; the text written is the same, record for record. The receiver flushes at the
end of every loop turn, before a connection closes and before a non-log frame is answered, so
no record waits longer than the turn that read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

#: Handlers whose ``emit`` is exactly one of these are written in batches.
_BATCHABLE_EMITS = (logging.StreamHandler.emit, logging.FileHandler.emit)


class Owner(Protocol):
    """What sent a record: a connection, closed once it is refused."""

    closed: bool


#: Called with the owner of a record whose handling raised (e.g. a master-side filter).
OnError = Callable[[Owner, Exception], None]


def _batchable(handler: logging.Handler) -> bool:
    kind = type(handler)
    return (kind.emit in _BATCHABLE_EMITS and kind.handle is logging.Handler.handle
            and getattr(handler, "stream", None) is not None)


def _filtered(filterer: logging.Filterer, record: logging.LogRecord) -> logging.LogRecord | None:
    """The record a logger's or handler's filters let through (3.12 filters may replace it)."""
    if not filterer.filters:
        return record
    passed = filterer.filter(record)
    if not passed:
        return None
    return passed if isinstance(passed, logging.LogRecord) else record


class BatchEmitter:
    """Collects the records of a loop turn; :meth:`flush` hands them to logging, in order.

    Used by the log server's thread only.
    """

    def __init__(self, on_error: OnError, limit: int = 1024) -> None:
        self.on_error = on_error
        self.limit = limit
        """Records held at most: at that many, :meth:`add` flushes (bounds the memory held)."""
        self._pending: list[tuple[logging.Logger, logging.LogRecord, Owner]] = []
        self._flushing = False

    def add(self, target: logging.Logger, record: logging.LogRecord, owner: Owner) -> None:
        """Keep ``record`` for ``target``'s handlers until the next flush."""
        self._pending.append((target, record, owner))
        if len(self._pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Emit every kept record. Safe to call re-entrantly (a refusal closing a connection
        while its batch is out): the inner call has nothing of its own to do."""
        if self._flushing or not self._pending:
            return
        self._flushing = True
        try:
            self._emit(self._take())
        finally:
            self._flushing = False

    def _take(self) -> list[tuple[logging.Logger, logging.LogRecord, Owner]]:
        pending, self._pending = self._pending, []
        return pending

    def _emit(self, pending: list[tuple[logging.Logger, logging.LogRecord, Owner]]) -> None:
        # Per logger, once per flush: its handlers' levels and shares, as callHandlers visits them.
        routes: dict[logging.Logger, list[tuple[int, list[tuple[logging.LogRecord, Owner]]]]] = {}
        shares: dict[logging.Handler, list[tuple[logging.LogRecord, Owner]]] = {}
        for target, record, owner in pending:
            if owner.closed or target.disabled:
                continue
            if target.filters:
                try:
                    passed = _filtered(target, record)
                except Exception as exc:  # noqa: BLE001 - the sender is refused, the rest go on
                    self.on_error(owner, exc)
                    continue
                if passed is None:
                    continue
                record = passed
            route = routes.get(target)
            if route is None:
                route = routes[target] = [(handler.level, shares.setdefault(handler, []))
                                          for handler in _handlers(target)]
            if not route:
                target.callHandlers(record)  # logging's last resort, or its one-time warning
                continue
            levelno = record.levelno
            for level, share in route:
                if levelno >= level:
                    share.append((record, owner))
        for handler, share in shares.items():
            if not share:
                continue
            if _batchable(handler):
                self._write(handler, share)
            else:
                for record, owner in share:
                    try:
                        handler.handle(record)
                    except Exception as exc:  # noqa: BLE001
                        self.on_error(owner, exc)

    def _write(self, handler: logging.Handler,
               share: list[tuple[logging.LogRecord, Owner]]) -> None:
        """``StreamHandler.emit`` for a batch: format each, then one write and one flush."""
        texts: list[str] = []
        last: logging.LogRecord | None = None
        terminator = getattr(handler, "terminator", "\n")
        handler.acquire()
        try:
            for record, owner in share:
                try:
                    passed = _filtered(handler, record)
                except Exception as exc:  # noqa: BLE001
                    self.on_error(owner, exc)
                    continue
                if passed is None:
                    continue
                try:
                    texts.append(handler.format(passed) + terminator)
                except RecursionError:
                    raise
                except Exception:  # noqa: BLE001 - as StreamHandler.emit: the handler reports it
                    handler.handleError(passed)
                    continue
                last = passed
            if last is None:
                return
            try:
                handler.stream.write("".join(texts))  # type: ignore[attr-defined]
                handler.flush()
            except RecursionError:
                raise
            except Exception:  # noqa: BLE001
                handler.handleError(last)
        finally:
            handler.release()


def _handlers(target: logging.Logger) -> list[logging.Handler]:
    """The handlers ``Logger.callHandlers`` would visit for ``target``, in its order."""
    found: list[logging.Handler] = []
    logger: logging.Logger | None = target
    while logger is not None:
        found.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    return found

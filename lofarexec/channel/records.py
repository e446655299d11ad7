"""Node log records re-emitted in the master's logging, under names the node cannot choose.

A record arrives as checked fields (:func:`lofarexec.channel.protocol.parse_log_record`) and
becomes a :class:`logging.LogRecord` of the master again, keeping its level, time and message.
Its logger name is forced under the job's registered host, so a node can never log as the
master, as the recipe, or as another host.

:class:`RecordMaker` is the receiver's fast path: the same records as :func:`reemit` makes, but
built from a per-name template (no ``LogRecord.__init__`` per record) and handed to a batch
(:mod:`lofarexec.channel.emitter`) rather than to the logger one by one.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

_NAME_TAIL = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\Z")


def forced_name(name: str, host: str, recipe_name: str) -> str:
    """``node.<host>.<rest>`` for the job's registered host, whatever host the node claims."""
    exact = f"node.{host}."
    if name.startswith(exact):
        tail = name[len(exact):]
    elif name.startswith("node."):
        tail = name.split(".", 2)[2] if name.count(".") >= 2 else ""
    else:
        tail = ""
    if not _NAME_TAIL.match(tail):
        tail = recipe_name
    return f"node.{host}.{tail}"


def reemit(fields: dict[str, Any], *, host: str, job_id: int | None, recipe_name: str) -> None:
    """Hand one node record to the master's logger of the forced name (if its level is on)."""
    name = forced_name(fields["name"], host, recipe_name)
    target = logging.getLogger(name)
    # Respect the master's configured level, as a local logger call would.
    if not target.isEnabledFor(fields["levelno"]):
        return
    created = fields["created"]
    target.handle(logging.makeLogRecord({
        "name": name,
        "levelno": fields["levelno"],
        "levelname": logging.getLevelName(fields["levelno"]),
        "msg": fields["msg"],
        "args": None,
        "created": created,
        "msecs": int((created - int(created)) * 1000) + 0.0,
        "exc_text": fields["exc_text"],
        "lofarexec_job_id": job_id,
        "lofarexec_host": host,
    }))


#: ``relativeCreated`` of a record made now is ``time.time() * 1000 - _START_MS``, as
#: ``LogRecord.__init__`` computes it (from logging's start time), found without a private name.
_START_MS = time.time() * 1000 - logging.makeLogRecord({}).relativeCreated


class RecordMaker:
    """Makes one connection's node records into the master's ``LogRecord`` objects.

    For each logger name a node uses, the forced name, its logger and a template of the fields
    ``logging.makeLogRecord`` would set (this thread's, this process's) are computed once; a
    record is then a copy of the template with the node's fields. The result equals what
    :func:`reemit` hands to the logger, field for field (``relativeCreated`` to the microsecond).
    """

    #: Distinct names remembered per connection; beyond, a name is worked out each time.
    MAX_NAMES = 256

    def __init__(self, *, host: str, job_id: int | None, recipe_name: str) -> None:
        self.host, self.job_id, self.recipe_name = host, job_id, recipe_name
        self._names: dict[str, tuple[logging.Logger, dict[str, Any]]] = {}

    def _target(self, name: str) -> tuple[logging.Logger, dict[str, Any]]:
        known = self._names.get(name)
        if known is not None:
            return known
        forced = forced_name(name, self.host, self.recipe_name)
        template = dict(vars(logging.makeLogRecord({
            "name": forced, "args": None, "lofarexec_job_id": self.job_id,
            "lofarexec_host": self.host})))
        known = (logging.getLogger(forced), template)
        if len(self._names) < self.MAX_NAMES:
            self._names[name] = known
        return known

    def make(self, fields: dict[str, Any]) -> tuple[logging.Logger, logging.LogRecord] | None:
        """The logger and record for checked ``fields``; None when the master's level for that
        logger is off (as :func:`reemit` skips it)."""
        target, template = self._target(fields["name"])
        levelno = fields["levelno"]
        if not target.isEnabledFor(levelno):
            return None
        created = fields["created"]
        values = template.copy()
        values["levelno"] = levelno
        values["levelname"] = logging.getLevelName(levelno)
        values["msg"] = fields["msg"]
        values["created"] = created
        values["msecs"] = int((created - int(created)) * 1000) + 0.0
        values["relativeCreated"] = time.time() * 1000 - _START_MS
        values["exc_text"] = fields["exc_text"]
        record = _new_record(logging.LogRecord)
        record.__dict__ = values
        return target, record


_new_record = object.__new__

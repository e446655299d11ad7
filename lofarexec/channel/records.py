"""Node log records re-emitted in the master's logging, under names the node cannot choose.

A record arrives as checked fields (:func:`lofarexec.channel.protocol.parse_log_record`) and
becomes a :class:`logging.LogRecord` of the master again, keeping its level, time and message.
Its logger name is forced under the job's registered host, so a node can never log as the
master, as the recipe, or as another host.
"""

from __future__ import annotations

import logging
import re
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

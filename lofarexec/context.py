"""The run context: what the hooks are told about the ``_schedule_jobs`` call in progress.

A leaf module (standard library only) beside :mod:`lofarexec.job`, so that the hook
specifications in :mod:`lofarexec.plugin.spec` can type their ``run`` argument without importing
the run layer that builds it (:mod:`lofarexec.run.runner`).
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from pathlib import Path

_MILLISECOND = datetime.timedelta(milliseconds=1)
_last_started = datetime.datetime.min
_started_lock = threading.Lock()


def _now() -> str:
    """The time now to the millisecond, later than any earlier call's in this process.

    Journal lines and report attempts are keyed on (this stamp, job id), so two batches begun
    within one millisecond (small or dry runs) must not share a stamp.
    """
    global _last_started
    with _started_lock:
        # a millisecond after the last stamp is in the next millisecond, whatever its fraction
        _last_started = max(datetime.datetime.now(), _last_started + _MILLISECOND)
        return _last_started.isoformat(timespec="milliseconds")


@dataclasses.dataclass
class RunContext:
    """What the hooks are told about the run in progress; one per ``_schedule_jobs`` call."""

    recipe_name: str
    """The recipe's name (its class name), as in the node loggers ``node.<host>.<recipe>``."""
    backend_name: str
    """The backend running the jobs (``[remote] method``)."""
    job_directory: Path
    """``[layout] job_directory``: where the journal and the jobs' own folders are."""
    log_address: tuple[str, int]
    """The log server's ``(host, port)`` the nodes connect back to."""
    dry_run: bool = False
    """True when no job is started (``--dry-run``): every job ends ``not_started``."""
    started: str = dataclasses.field(default_factory=_now)
    """When this batch began: tells apart the journal lines of successive batches."""

"""The journal: JSON lines appended to ``<job_directory>/journal.jsonl``, two per job attempt.

A plugin of the job hooks, like pytest's reporters. Resume, reports and timelines read it.

A ``started`` line is written (and flushed) before a job's backend is asked to start it, so after
any death of the control node (SIGKILL, power) the journal tells a job that was running from one
that never ran. An ``ended`` line follows when the job has its final state.

When ``ended`` lines reach the file: a write per line costs more than the rest of the journal's
work, and thousands of short jobs a second end on the control node, so they are gathered in
memory and written together. They are written out at once when

* their job did not succeed (the record one most wants after a crash), or a job starts;
* the previous write is :data:`FLUSH_INTERVAL` or more ago (at a low rate every line is written
  as its job ends);
* :data:`FLUSH_LINES` lines are waiting;
* the run ends, however it ends (``lofarexec_run_finished`` is called from a ``finally``).

Otherwise the journal's one flush thread writes the waiting lines :data:`FLUSH_INTERVAL` after
the previous write. So a control node that dies without unwinding loses at most the ``ended``
lines of succeeded jobs of the last 0.1 s; their ``started`` lines are on disk, so a resume
knows they may have run.

A full or failing disk: each write is whole or nothing (a partial write is cut off again), lines
that could not be written wait in memory and go out with the next write that succeeds (never
twice), and the recipe's log gets one error saying what that means for a resume, instead of a
traceback per job. A journal whose last line was torn by an earlier crash is read without it.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from lofarexec.context import RunContext
from lofarexec.errors import ConfigError, LofarexecError
from lofarexec.job import RESULT_KEYS, SUCCEEDED, SUMMARY_KEYS, ComputeJob
from lofarexec.plugin.spec import hookimpl

JOURNAL_NAME = "journal.jsonl"
#: Seconds a succeeded job's line may wait in memory before it is written to the file.
FLUSH_INTERVAL = 0.1
#: Lines that wait in memory before they are written together (bounds a single write).
FLUSH_LINES = 1000
#: The ``event`` of a journal line: written when a job starts, and when it has its final state.
STARTED, ENDED = "started", "ended"
_RESERVED = frozenset(RESULT_KEYS)
_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps(**kw) is not
_string = json.encoder.encode_basestring  # what _encode uses for a str (the C one when built)
_SUMMARY_PIECES = tuple((f', "{key}": ', key) for key in SUMMARY_KEYS)
#: The keys a started line shares with its ended line (up to the start), and the others.
_SHARED = SUMMARY_KEYS.index("start_time") + 1
_STARTED_PIECES, _ENDED_PIECES = _SUMMARY_PIECES[:_SHARED], _SUMMARY_PIECES[_SHARED:]
_EVENT = {event: f', "event": "{event}"' for event in (STARTED, ENDED)}
_float_repr, _int_repr = float.__repr__, int.__repr__
_log = logging.getLogger(__name__)


class JournalWriter:
    """Appends a line per job start and per job end; opened at run start, closed at run end.

    The job hooks come from one thread at a time, the timer from its own: a lock orders them.
    """

    def __init__(self, flush_interval: float = FLUSH_INTERVAL,
                 flush_lines: int = FLUSH_LINES, logger: logging.Logger | None = None) -> None:
        self.flush_interval = flush_interval
        self.flush_lines = flush_lines
        self.logger = logger or _log
        self._fd: int | None = None
        self._path = Path()
        self._head = self._recipe_key = ""  # the line's fixed pieces, set as the run starts
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self._last_write = -math.inf
        self._due: float | None = None
        """When the waiting lines are to be written if nothing writes them before."""
        self._flusher: threading.Thread | None = None
        """The one thread that writes them then, for as long as the run goes (not a thread
        per flush: a run of short jobs would start ten a second)."""
        self._wake = threading.Condition(self._lock)
        self._failure: OSError | None = None
        self._started: dict[int, tuple[Any, str, str]] = {}
        """Per running job: its start time and the pieces of its started line an ended line
        repeats (see :meth:`_line`)."""

    @hookimpl
    def lofarexec_run_started(self, run: RunContext) -> None:
        if getattr(run, "dry_run", False):
            return  # a dry run writes nothing
        directory = Path(run.job_directory)
        path = directory / JOURNAL_NAME
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the journal {path}: {exc.strerror or exc}; make the folder "
                "writable, or set it to a writable folder", section="layout",
                key="job_directory") from None
        _cut_torn_tail(fd, path, self.logger)
        with self._lock:
            self._fd, self._path = fd, path
            self._last_write = -math.inf  # the first line is written at once
            self._failure = None
        self._head = '{"run": ' + _value(run.started) + ', "id": '
        self._started.clear()
        self._recipe_key = ', "recipe": ' + _value(run.recipe_name) + ', "command": '

    @hookimpl
    def lofarexec_job_started(self, job: ComputeJob) -> None:
        line = self._line(job, STARTED)
        with self._lock:
            if self._fd is not None:
                self._waiting.append(line)
                self._write_waiting(time.monotonic())  # before the backend is asked

    @hookimpl
    def lofarexec_job_finished(self, job: ComputeJob) -> None:
        line = self._line(job, ENDED)
        with self._lock:
            if self._fd is None:
                return
            self._waiting.append(line)
            now = time.monotonic()
            if (job.results.get("state") != SUCCEEDED or len(self._waiting) >= self.flush_lines
                    or now - self._last_write >= self.flush_interval):
                self._write_waiting(now)
            elif self._due is None:
                self._due = self._last_write + self.flush_interval
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._write_when_due, daemon=True,
                                                     name="journal-flush")
                    self._flusher.start()  # daemon: the run's end writes what still waits
                else:
                    self._wake.notify()

    @hookimpl
    def lofarexec_run_finished(self) -> None:
        with self._lock:
            self._due = self._flusher = None  # the flusher sees it is no longer wanted
            self._started = {}  # none run now; a dict keeps its largest size (a run's peak)
            self._wake.notify()
            if self._fd is None:
                return
            self._write_waiting(time.monotonic())
            if self._waiting:
                self.logger.error(
                    "the journal %s lacks %d lines of this run (%s): a resumed run cannot tell "
                    "whether those jobs ran, and runs them again", self._path,
                    len(self._waiting), _reason(self._failure))
                self._waiting.clear()
            os.close(self._fd)
            self._fd = None

    def _line(self, job: ComputeJob, event: str) -> str:
        """The JSON line, byte for byte what ``json.dumps(entry, ensure_ascii=False)`` of the
        entry dict gives, put together from pieces: twice per job, so the dict and the
        encoder's generic walk are left out (about half the cost). An ``ended`` line reuses
        the pieces its attempt's ``started`` line had: who the job is, its host, backend,
        attempt and start (kept per running job only)."""
        results = job.results
        get = results.get
        start = get("start_time")
        known = self._started.pop(job.id, None)  # type: ignore[arg-type]
        if known is not None and known[0] is start:  # this attempt's (start() set a new float)
            _, who, where = known
        else:
            who = self._head + _value(job.id) + self._recipe_key + _string(job.command)
            where = "".join([key + _value(get(name)) for key, name in _STARTED_PIECES])
        parts = [who, _EVENT[event], where]
        for key, name in _ENDED_PIECES:
            parts.append(key)
            parts.append(_value(get(name)))
        if event == STARTED:
            self._started[job.id] = (start, who, where)  # type: ignore[index]
        else:  # what a resumed run needs to skip the job and give back its outputs
            if job.identity is not None:
                parts.append(', "identity": ')
                parts.append(_value(job.identity))
            if not _RESERVED.issuperset(results):
                parts.append(', "outputs": ')
                parts.append(_encode({key: value for key, value in results.items()
                                      if key not in _RESERVED}))
        parts.append("}\n")
        return "".join(parts)

    def _write_when_due(self) -> None:
        """The flusher: write the waiting lines when they are due, until the run ends."""
        me = threading.current_thread()
        with self._lock:
            while self._flusher is me:
                due = self._due
                now = time.monotonic()
                if due is None or now < due:
                    self._wake.wait(None if due is None else due - now)
                    continue
                self._due = None
                if self._fd is not None and self._waiting:
                    self._write_waiting(now)

    def _write_waiting(self, now: float) -> None:
        """Write the waiting lines whole, or none of them (the lock is held)."""
        assert self._fd is not None
        self._last_write = now
        if not self._waiting:
            return
        # backslashreplace: a lone surrogate becomes its JSON escape, which reads back the same
        data = "".join(self._waiting).encode("utf-8", "backslashreplace")
        try:
            _append_whole(self._fd, data)
        except OSError as exc:
            if self._failure is None:
                self.logger.error(
                    "cannot write the journal %s (%s): its lines wait in memory and are written "
                    "once the disk takes them; if the run ends first, a resumed run cannot tell "
                    "whether those jobs ran, and runs them again", self._path, _reason(exc))
            self._failure = exc
            return
        if self._failure is not None:
            self.logger.warning("the journal %s is written again (%d lines had waited)",
                                self._path, len(self._waiting))
            self._failure = None
        self._waiting.clear()


def _value(value: Any) -> str:
    """``value`` as ``_encode`` writes it; the common types without its generic walk."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is float and value - value == 0:  # finite (NaN and infinities: the encoder's words)
        return _float_repr(value)
    if kind is int:
        return _int_repr(value)
    if value is None:
        return "null"
    return _encode(value)


def _append_whole(fd: int, data: bytes) -> None:
    """Append ``data`` to the file, or leave the file as it was and raise ``OSError``.

    Nothing else appends to the file meanwhile (the run lock), so a write that fails part way
    is cut off by the bytes it wrote: no ``fstat`` before each write, only after a failure."""
    written = os.write(fd, data)  # usually all of it
    if written == len(data):
        return
    view = memoryview(data)[written:]
    try:
        while view:
            part = os.write(fd, view)
            if part == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += part
            view = view[part:]
    except OSError:
        try:  # cut off a partial write: no torn line, no duplicate later
            os.ftruncate(fd, os.fstat(fd).st_size - written)
        except OSError:
            pass
        raise


def _cut_torn_tail(fd: int, path: Path, logger: logging.Logger) -> None:
    """Remove a last line without its newline (an earlier crash), so appending stays clean."""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(path, "rb") as journal:
            journal.seek(max(0, size - 65536))
            tail = journal.read()
        if tail.endswith(b"\n"):
            return
        keep = tail.rfind(b"\n")
        if keep < 0 and size > len(tail):
            return  # a last line longer than 64 KiB is not ours: leave it to the reader
        new_size = size - len(tail) + keep + 1
        os.ftruncate(fd, new_size)
    except OSError as exc:
        logger.warning("cannot check the end of the journal %s (%s)", path, _reason(exc))
        return
    logger.warning("the journal %s ended in a torn line (%d bytes, from a run that died while "
                   "writing it); removed", path, size - new_size)


def _reason(exc: OSError | None) -> str:
    return "unknown" if exc is None else exc.strerror or str(exc)


def read_journal(job_directory: str | Path, *, every_line: bool = False) -> list[dict[str, Any]]:
    """The entries of a job directory's journal, oldest first: one per job attempt.

    Each attempt's entry is its ``ended`` line, or, for a job whose run died while it ran, its
    ``started`` line (``state`` ``running``); a job that never ran has no entry. Lines written
    before journals had ``started`` lines (no ``event``) are ``ended`` lines. With
    ``every_line`` every line comes back as written. A torn last line (the control node died,
    or the disk was full, while writing it) is skipped with a warning; any other line that is
    not JSON is a :class:`~lofarexec.errors.LofarexecError` naming file and line.
    """
    path = Path(job_directory) / JOURNAL_NAME
    lines = _journal_lines(path)
    if every_line:
        return lines
    entries: list[tuple[int, dict[str, Any]]] = []
    running: dict[tuple[Any, Any], tuple[int, dict[str, Any]]] = {}
    for position, entry in enumerate(lines):
        attempt = (entry.get("run"), entry.get("id"))
        if entry.get("event") == STARTED:
            running[attempt] = (position, entry)
        else:
            running.pop(attempt, None)
            entries.append((position, entry))
    entries.extend(running.values())
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


def _journal_lines(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as journal:
        data = journal.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    if torn.strip():
        _log.warning("%s: the last line is torn (%d bytes without an end, written as the "
                     "control node died or the disk filled up); skipped", path, len(torn))
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line.decode("utf-8")))
        except ValueError as exc:
            raise LofarexecError(f"{path}:{number}: not a journal line ({exc}); the file was "
                                 "changed by hand or by another program") from None
    return entries

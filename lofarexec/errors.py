"""The one error tree of lofarexec.

Every error lofarexec raises on purpose derives from :class:`LofarexecError`, carries the context
a user needs to act (file, section, key, line, host, job id) and renders as one line that says
what went wrong, where, and what to do::

    LofarexecError
     +-- ConfigError          pipeline.cfg: a missing file, section or key, or a bad value
     +-- DataMapError         a mapfile that cannot be read or is malformed
 |    +-- DataMapSyntaxError  its text does not parse (also a SyntaxError, as the framework's)
     +-- PluginError          no backend of that name, a plugin that fails to load
     +-- ProtocolError        a frame on the job channel that is not ours
     +-- JobListError         jobs that cannot run as given: an empty, unsplittable or NUL-holding
     |                        command, arguments that are not JSON, no host and no host list, a
     |                        limit below 1 (also a ValueError)
     +-- WaitTimeout          nothing came in time: a batch to start, a value on the board, the
     |                        master's reply to a node (also a TimeoutError)
     +-- BackendError         the transport failed (the job did not run, or its fate is unknown)
     |    +-- ConnectError        the host could not be reached
     |    +-- AuthenticationError the host refused our credentials
     |    +-- HostKeyError        the host's key is unknown or changed
     +-- JobFailed            a job did not succeed; raised by ComputeJob.raise_for_state()
     |    +-- JobTimeout          a job ran past its time limit and was killed
     +-- PipelineQuit         the run was stopped (Ctrl-C, SIGTERM, kill switch)

The classes that also derive from a built-in exception keep older ``except ValueError`` and
``except TimeoutError`` code working.

Foreign exceptions (paramiko's, OSError from a transport) are translated into this tree at the
edge where they occur (``raise BackendError(...) from exc``), so the scheduler and recipes only
ever see these types.
"""

from __future__ import annotations


class LofarexecError(Exception):
    """Base of every error lofarexec raises on purpose; ``str()`` is a one-line message."""


class ConfigError(LofarexecError):
    """``pipeline.cfg`` is missing, unreadable, or has a missing or bad value.

    The message names the file, and where known the section and key, and says what to do.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.filename = filename
        self.section = section
        self.key = key
        where = ", ".join(
            part
            for part in (
                filename,
                f"section [{section}]" if section else None,
                f"key '{key}'" if key else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class DataMapError(LofarexecError):
    """A mapfile cannot be read or is malformed; names the file and line."""

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None):
        self.filename = filename
        self.line = line
        where = filename or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


class DataMapSyntaxError(DataMapError, SyntaxError):
    """A mapfile's text does not parse; also a ``SyntaxError``, which the framework's reader
    raised, so ``except SyntaxError`` in older recipes still catches it."""

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None):
        super().__init__(message, filename=filename, line=line)
        self.lineno = line

    def __str__(self) -> str:
        # SyntaxError's own str() would append "(filename, line N)" a second time
        return str(self.args[0]) if self.args else ""


class PluginError(LofarexecError):
    """A backend name nobody provides, or a plugin that failed to load or register."""


class ProtocolError(LofarexecError):
    """A frame on the job channel is malformed, oversized, unauthenticated or of an unknown type."""


class JobListError(LofarexecError, ValueError):
    """The jobs handed to a run cannot run as given; raised before any job starts.

    An empty or unsplittable command, a NUL byte in a command or argument, stored arguments that
    are not JSON, a job without a host when the run has no host list, a job limit below 1. The
    message names the job (its index in the list) and what to change.
    """


class WaitTimeout(LofarexecError, TimeoutError):
    """Nothing came within the time asked for: a batch of jobs to start, a value on the run's
    board (:meth:`~lofarexec.channel.exchange.JobExchange.get`), the master's reply to a node."""


class BackendError(LofarexecError):
    """The transport failed: the job did not start on its host, or its outcome is unknown."""

    def __init__(self, message: str, *, host: str | None = None) -> None:
        self.host = host
        super().__init__(f"{host}: {message}" if host else message)


class ConnectError(BackendError):
    """The host could not be reached (refused, unreachable, timed out)."""


class AuthenticationError(BackendError):
    """The host refused the credentials offered."""


class HostKeyError(BackendError):
    """The host's key is not known, or differs from the one on record."""


class JobFailed(LofarexecError):
    """A job did not succeed; raised by :meth:`~lofarexec.job.ComputeJob.raise_for_state` for a
    recipe that wants an exception rather than the ``error`` flag and ``job.results``.

    Carries the job's ``job_id``, ``host``, ``state`` (a ``JobState`` value), ``returncode``
    (the node's exit status, ``None`` when it never ran) and ``reason``.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: int | None = None,
        host: str | None = None,
        state: str | None = None,
        returncode: int | None = None,
        reason: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.host = host
        self.state = state
        self.returncode = returncode
        self.reason = reason
        super().__init__(message)


class JobTimeout(JobFailed):
    """A job ran past its time limit and was killed."""


class PipelineQuit(LofarexecError):
    """The run was stopped on purpose (Ctrl-C, SIGTERM, kill switch); running jobs were killed."""

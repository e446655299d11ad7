"""The one error tree of lofarexec.

Every error lofarexec raises on purpose derives from :class:`LofarexecError`, carries the context
a user needs to act (file, section, key, line, host, job id) and renders as one line that says
what went wrong, where, and what to do::

    LofarexecError
     +-- ConfigError          pipeline.cfg: a missing file, section or key, or a bad value
     +-- DataMapError         a mapfile that cannot be read or is malformed
     +-- PluginError          no backend of that name, a plugin that fails to load
     +-- ProtocolError        a frame on the job channel that is not ours
     +-- BackendError         the transport failed (the job did not run, or its fate is unknown)
     |    +-- ConnectError        the host could not be reached
     |    +-- AuthenticationError the host refused our credentials
     |    +-- HostKeyError        the host's key is unknown or changed
     +-- JobFailed            a job ended unsuccessfully (raised only when a caller asks for it)
     |    +-- JobTimeout          a job ran past its time limit
     +-- PipelineQuit         the run was stopped (Ctrl-C, SIGTERM, kill switch)

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


class PluginError(LofarexecError):
    """A backend name nobody provides, or a plugin that failed to load or register."""


class ProtocolError(LofarexecError):
    """A frame on the job channel is malformed, oversized, unauthenticated or of an unknown type."""


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
    """A job ended unsuccessfully; raised only by callers that ask for exceptions over flags."""

    def __init__(self, message: str, *, job_id: int | None = None, host: str | None = None):
        self.job_id = job_id
        self.host = host
        super().__init__(message)


class JobTimeout(JobFailed):
    """A job ran past its time limit and was killed."""


class PipelineQuit(LofarexecError):
    """The run was stopped on purpose (Ctrl-C, SIGTERM, kill switch); running jobs were killed."""

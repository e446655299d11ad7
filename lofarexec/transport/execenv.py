"""Creating a child process as ``subprocess.Popen`` does, without its per-call Python work.

A control node running thousands of short jobs creates a process for each, and most of what
``Popen`` costs the interpreter then is not the creation itself but the work around it, done
again for every child: encoding the whole environment (``os.fsencode`` on each of its ~40
names and values), opening ``/dev/null``, an ``ExitStack`` of clean-ups. Measured on the
benchmark machine, about 0.1 ms of interpreter time per child, against about 0.02 ms here.

:func:`spawn` does what ``Popen(argv, stdin=, stdout=, stderr=, env=, start_new_session=True)``
does, with two differences: the environment comes encoded (an :class:`ExecEnvironment`, built
once per run, a job's own few variables appended), and standard streams are descriptors the
caller owns. It calls the function ``Popen`` itself calls to create the child,
``_posixsubprocess.fork_exec``, with the arguments ``Popen`` gives it, so the child is created
exactly as ``Popen`` creates it: vfork/exec with the interpreter lock released meanwhile,
signals reset, other descriptors closed, a new session, an exec failure reported through a
close-on-exec pipe and raised here as ``OSError``.

``fork_exec`` is CPython's private API: its arguments are those of CPython 3.11 to 3.13 (read
from each version's ``subprocess.py``). On any other version, or without it, :func:`spawn`
falls back to ``Popen`` itself: the same behaviour, only slower.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_KNOWN_FORK_EXEC_VERSIONS = ((3, 11), (3, 12), (3, 13))
_MAX_FAILURE_REPORT = 50000  # what Popen reads of an exec failure report, at most


def _known_fork_exec() -> Callable[..., int] | None:
    if sys.platform != "linux" or sys.version_info[:2] not in _KNOWN_FORK_EXEC_VERSIONS:
        return None
    try:
        import _posixsubprocess
    except ImportError:
        return None
    return getattr(_posixsubprocess, "fork_exec", None)


_fork_exec = _known_fork_exec()


class ExecEnvironment:
    """A child's environment, encoded once as the ``NAME=value`` bytes that exec takes.

    Build one per run from the variables every child gets, then :meth:`plus` a job's own few
    for each child: only those are encoded again.
    """

    __slots__ = ("entries", "_by_name", "_path")

    def __init__(self, variables: Mapping[str, str]) -> None:
        by_name: dict[str, bytes] = {}
        for name, value in variables.items():
            encoded = os.fsencode(name)
            if b"=" in encoded:
                raise ValueError(f"illegal environment variable name {name!r}")
            by_name[name] = encoded + b"=" + os.fsencode(value)
        self._by_name: dict[str, bytes] | None = by_name
        self.entries: list[bytes] = list(by_name.values())
        """The encoded variables, in exec's format."""
        self._path: str | None = variables.get("PATH")

    def plus(self, variables: Mapping[str, str]) -> ExecEnvironment:
        """This environment with ``variables`` set too (replacing any of the same name)."""
        added = ExecEnvironment(variables)
        result = ExecEnvironment.__new__(ExecEnvironment)
        mine = self._names()
        if mine.keys().isdisjoint(variables):
            result.entries = self.entries + added.entries
        else:
            result.entries = [entry for name, entry in mine.items() if name not in variables]
            result.entries += added.entries
        result._by_name = None  # worked out from the entries if this result is extended again
        result._path = added._path if "PATH" in variables else self._path
        return result

    def mapping(self) -> dict[bytes, bytes]:
        """The variables as a mapping of bytes, for ``Popen(env=...)``."""
        return dict(entry.split(b"=", 1) for entry in self.entries)

    def _names(self) -> dict[str, bytes]:
        if self._by_name is None:
            self._by_name = {os.fsdecode(entry.split(b"=", 1)[0]): entry
                             for entry in self.entries}
        return self._by_name

    @property
    def path(self) -> str | None:
        """The ``PATH`` the child gets (where a program name without a slash is looked for)."""
        return self._path


def spawn(argv: Sequence[str], *, env: ExecEnvironment | None, stdin: int, stdout: int,
          stderr: int) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start ``argv`` in a session of its own with the given standard streams; (pid, popen).

    ``env`` None means this process's environment. A program name without a slash is looked
    for in the child's ``PATH``, as ``Popen`` does. Raises ``OSError`` when the program cannot
    be started. ``popen`` is the ``Popen`` object when the fallback made one (set its
    ``returncode`` once the child is reaped, so that it does not warn), else None. The caller
    reaps the child.
    """
    fork_exec = _fork_exec
    args = list(argv)
    if fork_exec is None:
        return _spawn_with_popen(args, env, stdin, stdout, stderr)
    program = os.fsencode(args[0])
    path = env.path if env is not None else os.environ.get("PATH")
    executables = (program,) if b"/" in program else _search_list(program, path)
    sys.audit("subprocess.Popen", args[0], args, None, env.entries if env is not None else None)
    failure_read, failure_write = os.pipe2(os.O_CLOEXEC)
    if failure_write < 3:  # our standard streams are closed: let Popen shuffle descriptors
        os.close(failure_read)
        os.close(failure_write)
        return _spawn_with_popen(args, env, stdin, stdout, stderr)
    try:
        try:
            pid = fork_exec(
                args, executables, True, (failure_write,), None,
                env.entries if env is not None else None,
                stdin, -1, -1, stdout, -1, stderr, failure_read, failure_write,
                True, True, -1, None, None, None, -1, None,
                getattr(subprocess, "_USE_VFORK", True),
            )
        finally:
            os.close(failure_write)
        failure = _read_failure(failure_read)
    finally:
        os.close(failure_read)
    if failure:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise _exec_error(failure, args[0])
    return pid, None


def _spawn_with_popen(args: list[str], env: ExecEnvironment | None, stdin: int, stdout: int,
                      stderr: int) -> tuple[int, subprocess.Popen[bytes]]:
    popen = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr,
                             env=env.mapping() if env is not None else None,
                             start_new_session=True)
    return popen.pid, popen


@functools.lru_cache(maxsize=64)
def _search_list(program: bytes, path: str | None) -> tuple[bytes, ...]:
    """Where exec looks for ``program``, in order: each folder of ``path`` (``os.get_exec_path``
    rules; the default search path when there is none). Commands repeat: cached."""
    folders = (path if path is not None else os.defpath).split(os.pathsep)
    return tuple(os.path.join(os.fsencode(folder), program) for folder in folders)


def _read_failure(fd: int) -> bytes:
    """What the child wrote before exec closed the pipe: nothing when exec succeeded."""
    data = bytearray()
    while len(data) <= _MAX_FAILURE_REPORT:
        part = os.read(fd, _MAX_FAILURE_REPORT)
        if not part:
            break
        data += part
    return bytes(data)


def _exec_error(report: bytes, program: str) -> OSError:
    """The exception for the child's ``ExceptionName:hex errno:message`` report, as Popen's."""
    try:
        name, hex_errno, message = report.split(b":", 2)
        number = int(hex_errno, 16)
    except ValueError:
        return OSError(f"bad exec failure report from the child: {report!r}")
    if name != b"OSError" or not number:
        return OSError(message.decode(errors="replace"))
    filename: Any = None if message == b"noexec" else program  # noexec: failed before exec
    return OSError(number, os.strerror(number), filename)

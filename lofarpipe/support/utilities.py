"""``lofarpipe.support.utilities``: the framework's helpers that recipes and node scripts call.

Folders (:func:`create_directory`, :func:`delete_directory`, :func:`disk_usage`,
:func:`get_mountpoint`), running a LOFAR executable (:func:`catch_segfaults`, which retries a
run that segfaulted; :func:`spawn_process`), reading an environment script
(:func:`read_initscript`), lists (:func:`string_to_list`, :func:`is_iterable`,
:func:`group_iterable`) and :func:`log_time`. ``get_parset``/``patch_parset``/
``patched_parset`` need LOFAR's ``lofar.parameterset`` and raise
:class:`~lofarpipe.support.lofarexceptions.LofarBindingsMissing` when called (one line,
no traceback, when nothing catches it).

Standard library only: node scripts use these on their hosts.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from lofarpipe.support.lofarexceptions import missing_bindings
from lofarpipe.support.pipelinelogging import log_process_output, log_time

__all__ = [
    "catch_segfaults", "create_directory", "delete_directory", "deprecated", "disk_usage",
    "get_mountpoint", "get_parset", "group_iterable", "is_iterable", "izip_longest",
    "log_time", "patch_parset", "patched_parset", "read_initscript", "socket_recv",
    "spawn_process", "string_to_list",
]

Function = TypeVar("Function", bound=Callable[..., Any])

izip_longest = itertools.zip_longest

#: the exit status of a process killed by SIGSEGV, as subprocess reports it
SEGFAULT = -11

#: spawn errors worth retrying: the host is short of memory, processes or descriptors
_TRANSIENT = {errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE}


def deprecated(func: Function) -> Function:
    """Mark ``func`` deprecated: each call warns with a DeprecationWarning."""
    @functools.wraps(func)
    def warn_and_call(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(f"Call to deprecated function {func.__name__}.",
                      category=DeprecationWarning, stacklevel=2)
        return func(*args, **kwargs)
    return warn_and_call  # type: ignore[return-value]


# -- folders ------------------------------------------------------------------------------------
def get_mountpoint(path: str) -> str:
    """The mount point of the file system holding ``path``."""
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def create_directory(dirname: str | os.PathLike[str]) -> None:
    """Create ``dirname`` and its parents; nothing if it exists (or the name is empty)."""
    if dirname:
        os.makedirs(dirname, exist_ok=True)


def delete_directory(dirname: str | os.PathLike[str]) -> None:
    """Delete the tree at ``dirname``; nothing if it does not exist."""
    try:
        shutil.rmtree(dirname)
    except FileNotFoundError:
        pass


def disk_usage(*paths: str) -> int:
    """Bytes used by the files and trees at ``paths`` (their apparent size, as ``du -sb``)."""
    total = 0
    for path in paths:
        if os.path.isfile(path) or not os.path.isdir(path):
            total += os.lstat(path).st_size if os.path.lexists(path) else 0
            continue
        total += os.lstat(path).st_size
        for folder, subfolders, files in os.walk(path):
            for name in subfolders + files:
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


# -- lists --------------------------------------------------------------------------------------
def is_iterable(obj: Any) -> bool:
    """True if ``iter(obj)`` works."""
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def group_iterable(iterable: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """``iterable`` in tuples of ``size`` items, the last one shorter if need be."""
    iterator = iter(iterable)
    while chunk := tuple(itertools.islice(iterator, size)):
        yield chunk


def string_to_list(my_string: str) -> list[str]:
    """A list-like string of ``pipeline.cfg`` (``[a, b]``) as its items, blanks dropped."""
    return [item.strip() for item in my_string.strip("[] ").split(",") if item.strip()]


# -- processes ----------------------------------------------------------------------------------
def read_initscript(logger: logging.Logger, filename: str, shell: str = "/bin/sh"
                    ) -> dict[str, str]:
    """The environment after sourcing ``filename`` in ``shell``; ``{}`` (with a warning) if
    the script does not exist."""
    if not os.path.exists(filename):
        logger.warning("Environment initialisation script not found: %s", filename)
        return {}
    logger.debug("Reading environment from %s", filename)
    result = subprocess.run([shell, "-c", '. "$1" && env -0', shell, filename],
                            capture_output=True, check=False)
    if result.returncode:
        logger.warning("%s failed (exit status %d): %s", filename, result.returncode,
                       result.stderr.decode("utf-8", "replace").strip())
    pairs = (entry.split("=", 1) for entry in result.stdout.decode("utf-8", "replace")
             .split("\0"))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def spawn_process(cmd: Sequence[str], logger: logging.Logger, cwd: str | None = None,
                  env: Mapping[str, str] | None = None, max_tries: int = 2,
                  max_timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``cwd`` (created if missing) with pipes for its input and output.

    A start that fails for want of memory, processes or descriptors is tried again, up to
    ``max_tries`` more times, after a pause growing to ``max_timeout`` seconds; any other
    failure (no such program) is raised at once.
    """
    create_directory(cwd or "")
    for attempt in itertools.count():
        logger.debug("Spawning subprocess: cmd=%s, cwd=%s", list(cmd), cwd)
        try:
            return subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            if exc.errno not in _TRANSIENT or attempt >= max_tries:
                raise
            pause = min(max_timeout, 2.0 ** attempt)
            logger.warning("Failed to spawn %s (%s); retrying in %.0f s", cmd[0], exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


def catch_segfaults(cmd: Sequence[str], cwd: str | None, env: Mapping[str, str] | None,
                    logger: logging.Logger, max: int = 1,
                    cleanup: Callable[[], Any] = lambda: None,
                    usageStats: Any = None) -> subprocess.Popen[bytes]:
    """Run ``cmd`` to its end, its output logged; run it again if it segfaulted, up to
    ``max`` more times (``cleanup()`` before each retry).

    Returns the finished process; raises :class:`subprocess.CalledProcessError` when it exits
    non-zero, or still segfaults after the retries.
    """
    for attempt in range(max + 1):
        if attempt:
            logger.debug("Retrying...")
        logger.debug("Running: %s", " ".join(cmd))
        process = spawn_process(cmd, logger, cwd, env)
        if usageStats:
            usageStats.addPID(process.pid)
        sout, serr = process.communicate()
        log_process_output(cmd[0], sout, serr, logger)
        if process.returncode == 0:
            return process
        if process.returncode != SEGFAULT:
            raise subprocess.CalledProcessError(process.returncode, cmd[0])
        logger.warning("%s process segfaulted!", cmd[0])
        cleanup()
    logger.error("Too many segfaults from %s; aborted", cmd[0])
    raise subprocess.CalledProcessError(SEGFAULT, cmd[0])


def socket_recv(sock: socket.socket, numbytes: int) -> bytes:
    """Exactly ``numbytes`` from ``sock``; OSError if it closes first."""
    data = bytearray()
    while len(data) < numbytes:
        chunk = sock.recv(numbytes - len(data))
        if not chunk:
            raise OSError(f"Connection closed: received {len(data)} bytes, "
                          f"needed {numbytes - len(data)} more")
        data += chunk
    return bytes(data)


# -- parsets: LOFAR's C++ bindings --------------------------------------------------------------
def get_parset(*args: Any, **kwargs: Any) -> Any:
    """Needs ``lofar.parameterset``: raises ``LofarBindingsMissing``."""
    raise missing_bindings("lofarpipe.support.utilities.get_parset", "lofar.parameterset")


def patch_parset(*args: Any, **kwargs: Any) -> Any:
    """Needs ``lofar.parameterset``: raises ``LofarBindingsMissing``."""
    raise missing_bindings("lofarpipe.support.utilities.patch_parset", "lofar.parameterset")


def patched_parset(*args: Any, **kwargs: Any) -> Any:
    """Needs ``lofar.parameterset``: raises ``LofarBindingsMissing``."""
    raise missing_bindings("lofarpipe.support.utilities.patched_parset",
                               "lofar.parameterset")

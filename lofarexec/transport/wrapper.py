"""The control-node half of remote launches: the wrapper command, its stdin, and the verdict.

Transports that reach a host through a remote shell (``ssh``, ``paramiko``, ``cmdline``) or a
launcher (``mpirun``, ``srun``) all build the same remote command: the host's Python running
:mod:`lofarexec.hostprograms.launch_wrapper` inline, followed by the node's argv, quoted exactly
once for the remote shell with :func:`shlex.join`. What must not be on a command line (the
token, the environment) goes as the first line of stdin: the status marker, the kill grace and
one ``NAME=<base64>`` word per variable; see the wrapper's docstring for why each piece is
there. :meth:`RemoteLaunch.node_outcome` is the one reader of the wrapper's status line.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import shlex
import zlib
from collections.abc import Callable
from functools import lru_cache
from importlib import resources

from lofarexec.backend import JobHandle, LaunchRequest, NothingToKill, Outcome, Report
from lofarexec.channel.protocol import ENV_HOST, ENV_JOB_ID, ENV_TOKEN
from lofarexec.hostnames import host_name_problem
from lofarexec.transport.process import ProcessLauncher

#: The wrapper's interpreter on the host when the backend's settings do not name one.
DEFAULT_REMOTE_PYTHON = "python3"
_MARKER_PREFIX = "@lofarexec-status-"
#: The marker's own words; the launch wrapper writes ``\n<marker> <status>\n`` to stderr.
_STATUS_LINE = re.compile(
    rf"(?:\A|\n)(?P<marker>{re.escape(_MARKER_PREFIX)}[0-9a-f]+) "
    rf"(?P<status>-?\d+|start-failed)(?:\n|\Z)"
)


@dataclasses.dataclass(frozen=True)
class RemoteLaunch:
    """What to run on the host, what to write to its stdin first, and how to read the end."""

    command: str
    """The remote command line: one string for the remote shell."""
    argv: tuple[str, ...]
    """The same, as the argv the remote shell will build from ``command``."""
    stdin: bytes
    marker: str

    def verdict(self, seen: Outcome) -> Outcome:
        """The node's outcome from what the local launcher reported about the launcher process
        (ssh, mpirun, a template's program); its own start failure passes through as it is."""
        if seen.transport_error is not None:
            return seen
        return self.outcome(seen.returncode, seen.output, seen.errors)

    def node_outcome(self, output: str, errors: str) -> Outcome | None:
        """The node's outcome from the wrapper's status line in ``errors``, or None without it.

        The last line with this job's marker counts, wherever it is (a launcher may add lines
        of its own after it, as srun does); stderr before it is the node's. A node program
        that could not be started is a transport error in the wrapper's words ("cannot start
        'x': No such file or directory"), as the local launcher says it.
        """
        found = None
        for line in _STATUS_LINE.finditer(errors):
            if line.group("marker") == self.marker:
                found = line
        if found is None:
            return None
        errors = errors[: found.start()]
        if found.group("status") == "start-failed":
            return Outcome(None, transport_error=last_lines(errors, 1), output=output,
                           errors=errors)
        return Outcome(int(found.group("status")), output=output, errors=errors)

    def outcome(self, returncode: int | None, output: str, errors: str) -> Outcome:
        """Turn what the local launcher saw into the node's own outcome.

        With the wrapper's status line: :meth:`node_outcome`. Without it: the job's fate is
        unknown, so it is a transport error carrying the launcher's own words (e.g. ssh's
        "Connection refused").
        """
        node = self.node_outcome(output, errors)
        if node is not None:
            return node
        reason = last_lines(errors) or "no output"
        if returncode is not None and returncode < 0:
            what = f"the connection was killed by signal {-returncode}"
        elif returncode == 255:
            what = "the connection failed"
        else:
            what = f"the remote launcher failed (status {returncode})"
        return Outcome(None, transport_error=f"{what}: {reason}", output=output, errors=errors)


def remote_launch(
    request: LaunchRequest, *, python: str = DEFAULT_REMOTE_PYTHON, kill_grace: float = 1.0
) -> RemoteLaunch:
    """The remote command and stdin header for ``request``."""
    marker = _MARKER_PREFIX + secrets.token_hex(8)
    words = [marker, repr(float(kill_grace))]
    words += [f"{name}={_b64(value)}" for name, value in job_environment(request).items()]
    argv = (python, "-I", "-S", "-c", inline_program("launch_wrapper.py"), *request.argv)
    return RemoteLaunch(
        command=shlex.join(argv),
        argv=argv,
        stdin=" ".join(words).encode("ascii") + b"\n",
        marker=marker,
    )


def start_through_wrapper(
    launcher: ProcessLauncher,
    request: LaunchRequest,
    report: Report,
    local_argv: Callable[[str], list[str]],
    *,
    python: str = DEFAULT_REMOTE_PYTHON,
    kill_grace: float = 1.0,
) -> JobHandle:
    """Start ``request`` through a local program that runs a remote command (ssh, a template):
    ``local_argv(remote_command)`` is that program's argv. The wrapper's header goes to its
    stdin, which stays open for the job's life; its report is turned into the node's outcome.
    A host that is no host name (:func:`~lofarexec.hostnames.host_name_problem`: one that
    could pass for an option, say) is refused as a transport error.
    """
    problem = host_name_problem(request.host)
    if problem is not None:
        report(Outcome(None, transport_error=problem))
        return NothingToKill()
    launch = remote_launch(request, python=python, kill_grace=kill_grace)
    return launcher.launch(local_argv(launch.command), lambda seen: report(launch.verdict(seen)),
                           stdin_data=launch.stdin, keep_stdin_open=True)


def job_identity(request: LaunchRequest) -> dict[str, str]:
    """The variables that tell a node which job it is (id, token, host name): per job, where
    the rest of :attr:`LaunchRequest.environment` is the same for the whole run."""
    return {ENV_JOB_ID: str(request.job_id), ENV_TOKEN: request.token, ENV_HOST: request.host}


def job_environment(request: LaunchRequest) -> dict[str, str]:
    """What the node's environment gets on top of the host's: the request's variables and the
    job's identity, which a remote half sets from its stdin."""
    return {**request.environment, **job_identity(request)}


def agent_command(python: str = DEFAULT_REMOTE_PYTHON, silence_limit: float = 0.0,
                  marker: str = "") -> str:
    """The remote command that starts :mod:`lofarexec.hostprograms.host_agent` on a host; given a
    ``silence_limit``, the agent kills its jobs and exits when no frame came for that long;
    given a ``marker``, it also keeps its jobs' statuses in a file named by it
    (:func:`lofarexec.transport.orphans.fetch_statuses`)."""
    return shlex.join((python, "-I", "-S", "-c", inline_program("host_agent.py"),
                       f"{silence_limit:g}", *([marker] if marker else [])))


@lru_cache(maxsize=2)
def inline_program(module_file: str) -> str:
    """A module of this package as a one-line program for ``python -c`` on a host (compressed:
    it shows in ``ps`` there)."""
    source = resources.files("lofarexec.hostprograms").joinpath(module_file).read_bytes()
    packed = _b64(zlib.compress(source, 9))
    label = "lofarexec-" + module_file.removesuffix(".py")
    return (f"import binascii,zlib;exec(compile(zlib.decompress(binascii.a2b_base64("
            f"'{packed}')),'{label}','exec'),{{'__name__':'__main__'}})")


def _b64(value: str | bytes) -> str:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return base64.b64encode(data).decode("ascii")


def last_lines(text: str, count: int = 3) -> str:
    """The last ``count`` non-blank lines of a program's words, stripped, on one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:])

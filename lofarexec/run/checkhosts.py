"""``lofarexec check-hosts``: can each host run this pipeline's jobs, and if not, why not.

Called before a night's run, to find the host that would fail it. Every host gets one small
probe job, started through the configured backend's own :meth:`~lofarexec.backend.Backend.start`
with the environment a real job gets (:func:`~lofarexec.run.runner.node_environment`, so
``[deploy] engine_ppath`` counts), all hosts at once, each with its own time limit. The probe
is a few lines of standard-library Python (>= 3.8) that print one marked JSON line: its Python
version, whether ``lofarexec.node`` imports (and from where), and which node-script folders
(``<recipe_directories>/nodes``) exist there. A host is unusable when the probe cannot start
or answer, when the node side does not import, or when none of the configured node-script
folders exists on it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from lofarexec.backend import Backend, JobHandle, LaunchRequest, Outcome
from lofarexec.config import PipelineConfig
from lofarexec.plugin.manager import PluginManager, build_plugin_manager
from lofarexec.run.runner import DEFAULT_METHOD, node_environment

#: Seconds a host may take to answer the probe, connection included.
DEFAULT_TIMEOUT = 30.0
#: The interpreter the probe runs on when the backend names none (``remote_python``).
DEFAULT_PYTHON = "python3"
_MARKER = "lofarexec-check-hosts:"

# Kept to Python 3.8 syntax and the standard library: it runs on the hosts' own Python.
PROBE = """\
import json, os, sys
if sys.path and sys.path[0] == "":  # -c puts the working folder first; a node script's run
    del sys.path[0]                 # has its own folder there instead
found = {"python": sys.version.split()[0]}
try:
    import lofarexec.node
    import lofarexec
    found["node"] = "%s at %s" % (getattr(lofarexec, "__version__", "?"),
                                  os.path.dirname(os.path.abspath(lofarexec.__file__)))
except Exception as exc:
    found["node_error"] = "%s: %s" % (type(exc).__name__, exc)
found["folders"] = [folder for folder in sys.argv[2:] if os.path.isdir(folder)]
print(sys.argv[1] + " " + json.dumps(found))
"""


@dataclasses.dataclass
class HostCheck:
    """What the probe learnt about one host; ``reason`` is set when the host is unusable."""

    host: str
    seconds: float | None = None
    """From the probe's start request to its answer: connection, Python start-up, imports."""
    python: str | None = None
    node: str | None = None
    """``lofarexec`` version and folder when its node side imports there, else why not."""
    nodes_folder: str = "-"
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None


def probe_python(backend_class: type[Backend], settings: object) -> str:
    """The interpreter jobs' helpers run on: the backend's ``remote_python`` when it has one."""
    del backend_class  # the settings carry it; kept for backends that might say otherwise
    return str(getattr(settings, "remote_python", "") or DEFAULT_PYTHON)


def check_hosts(
    config: PipelineConfig,
    hosts: Sequence[str],
    *,
    python: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    plugins: PluginManager | None = None,
) -> list[HostCheck]:
    """Probe every host in ``hosts`` at once with the configured backend; one result each,
    in the order given. Raises only for configuration problems (unknown method, bad setting)."""
    plugins = plugins or build_plugin_manager()
    method = config.remote_method or DEFAULT_METHOD
    backend_class = plugins.backends.get(method)
    settings = config.section_settings(method, backend_class.Settings)
    interpreter = python or probe_python(backend_class, settings)
    folders = [str(directory / "nodes") for directory in config.recipe_directories]
    argv = (interpreter, "-c", PROBE, _MARKER, *folders)
    environment = node_environment(config)
    backend = backend_class(settings)
    probes = [_Probe(host) for host in dict.fromkeys(hosts)]
    try:
        backend.open()
        for job_id, probe in enumerate(probes):
            request = LaunchRequest(job_id=job_id, host=probe.host, argv=argv,
                                    environment=environment, token=secrets.token_hex(16),
                                    recipe_name="check-hosts")
            probe.begin(backend, request)
        for probe in probes:
            probe.wait(timeout)
    finally:
        backend.close()
    checks = {probe.host: probe.result(folders, interpreter, timeout) for probe in probes}
    return [checks[host] for host in hosts]


class _Probe:
    """One host's probe job: started, waited for with a deadline, then read."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._started = 0.0
        self._seconds: float | None = None
        self._handle: JobHandle | None = None
        self._lock = threading.Lock()
        self._timed_out = False

    def begin(self, backend: Backend, request: LaunchRequest) -> None:
        self._started = time.monotonic()
        try:
            self._handle = backend.start(request, self._report)
        except Exception as exc:  # a backend must not raise here; one host's bug is its own
            self._report(Outcome(None, transport_error=f"{type(exc).__name__}: {exc}"))

    def _report(self, outcome: Outcome) -> None:
        with self._lock:  # the outcome of a probe killed for its time limit is not its answer
            if self._done.is_set() or self._timed_out:
                return
            self._seconds = time.monotonic() - self._started
            self._outcome = outcome
            self._done.set()

    def wait(self, timeout: float) -> None:
        """Wait for the answer until ``timeout`` seconds after the start, else kill the probe."""
        remaining = self._started + timeout - time.monotonic()
        if self._done.wait(max(remaining, 0.0)):
            return
        with self._lock:
            self._timed_out = not self._done.is_set()
        if self._timed_out and self._handle is not None:
            self._handle.kill()

    def result(self, folders: list[str], interpreter: str, timeout: float) -> HostCheck:
        check = HostCheck(self.host)
        outcome = self._outcome
        if self._timed_out or outcome is None:
            check.reason = f"no answer within {timeout:g} s"
            return check
        check.seconds = self._seconds
        if outcome.transport_error:
            check.reason = _one_line(outcome.transport_error)
            return check
        found = _probe_line(outcome.output)
        if found is None:
            said = _one_line(outcome.errors) or "no output"
            check.reason = (f"the probe ({interpreter}) exited {outcome.returncode}: {said}; "
                            "name the hosts' Python with --python or the backend's "
                            "remote_python")
            return check
        _read_probe(check, found, folders)
        return check


def _read_probe(check: HostCheck, found: dict[str, object], folders: list[str]) -> None:
    check.python = str(found.get("python", "?"))
    error = found.get("node_error")
    check.node = str(found.get("node") or error)
    present = [str(folder) for folder in found.get("folders", []) or []]  # type: ignore[union-attr]
    if folders:
        check.nodes_folder = present[0] if present else "missing"
    if error:
        check.reason = (f"lofarexec.node does not import ({error}); set [deploy] engine_ppath "
                        "to the folder holding lofarexec on the hosts, or install it there")
    elif folders and not present:
        check.reason = (f"no node scripts' folder ({', '.join(folders)}); check [DEFAULT] "
                        "recipe_directories")


def _probe_line(output: str) -> dict[str, object] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(_MARKER):
            try:
                found = json.loads(line[len(_MARKER):])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def print_table(checks: Sequence[HostCheck], file: TextIO) -> None:
    """The results as a rich table on ``file`` (plain text when it is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="check-hosts")
    for column in ("host", "status", "seconds", "python", "lofarexec", "node scripts"):
        table.add_column(column, overflow="fold")
    for check in checks:
        seconds = "-" if check.seconds is None else f"{check.seconds:.2f}"
        status = "ok" if check.usable else "[bold red]UNUSABLE[/]"
        table.add_row(check.host, status, seconds, check.python or "-", check.node or "-",
                      check.nodes_folder)
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=200, no_color=True)
    console.print(table)

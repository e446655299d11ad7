"""The master side: :class:`BaseRecipe` and :class:`RemoteCommandRecipeMixIn`, as in the seed.

A recipe file ends with ``sys.exit(MyRecipe().main())`` and runs as
``python my_recipe.py -j JOB [-c pipeline.cfg] [-d] [args...]``. ``main`` parses the command
line, sets up console (and file) logging in the seed's format, calls ``go()``, prints the
results, and turns errors into one line and a non-zero exit status. Ctrl-C, SIGTERM and SIGHUP
stop new jobs, kill running ones on their hosts and end the recipe with :class:`PipelineQuit`.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import gc
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from lofarexec.config import PipelineConfig, find_config, load_config
from lofarexec.errors import ConfigError, LofarexecError, PipelineQuit, WaitTimeout
from lofarexec.ingredients import RecipeArgumentParser, RecipeIngredients
from lofarexec.job import ComputeJob
from lofarexec.run.runlock import RunLock

if TYPE_CHECKING:
    from lofarexec.channel.exchange import JobExchange
    from lofarexec.plugin.manager import PluginManager

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Outputs ``_schedule_jobs`` sets, kept off the console's "Results:" list.
REPORT_OUTPUTS = frozenset({"return_xml", "return_json"})
_READY_LOCK = threading.Lock()


class BaseRecipe(RecipeIngredients):
    """A pipeline step run on the control node. Override :meth:`go` and call ``super().go()``.

    Attributes available in ``go``: ``self.inputs`` (the parsed command line; positional
    arguments in ``inputs['args']``), ``self.outputs`` (printed as the results), ``self.config``
    (the :class:`~lofarexec.config.PipelineConfig`), ``self.logger`` (named after the recipe),
    ``self.error`` (a :class:`threading.Event` set when a job failed) and ``self.__file__``
    (this recipe's source file, from which node scripts are found by the seed's convention).

    A recipe that reads sections of its own from ``pipeline.cfg`` names them in
    :attr:`config_sections`; any other section lofarexec does not know is an error.
    """

    #: ``pipeline.cfg`` sections this recipe reads itself (``("bbs",)``); their keys are the
    #: recipe's business. Other unknown sections stop the recipe (a misspelt ``[remtoe]``).
    config_sections: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.name = type(self).__name__
        self.logger = logging.getLogger(self.name)
        self.inputs, self.outputs = self._new_ingredients(REPORT_OUTPUTS)  # see ingredients
        self.error = ErrorFlag()
        #: The master's ``*PATH`` and ``*ROOT`` variables (and ``QUEUE_PREFIX``, ``LOFARENV``),
        #: which the original framework's recipes pass on to their nodes as an argument.
        self.environment: dict[str, str] = {
            key: value for key, value in os.environ.items()
            if key.endswith(("PATH", "ROOT")) or key in ("QUEUE_PREFIX", "LOFARENV")}

    @property
    def __file__(self) -> str:
        """This recipe's source file, usable before ``__init__`` runs (a subclass's own
        ``__init__`` may need it first); node scripts are found from it."""
        return os.path.abspath(inspect.getfile(type(self)))

    def _store_data_map(self, path: str | os.PathLike[str], data: Any, message: str = "") -> None:
        """Write ``data`` (a DataMap, or ``(host, file)`` tuples) to ``path`` as a DataMap and
        say so at debug level, as the original framework's recipes expect."""
        from lofarexec.mapfiles.datamaps import DataMap  # deferred: light recipe import

        (data if hasattr(data, "save") else DataMap(data)).save(path)
        self.logger.debug("Wrote data_map <%s>: %s", path, message)

    # -- to override ---------------------------------------------------------------------------
    def go(self) -> int | None:
        """Do the recipe's work; subclasses call this first, for config and log-file set-up."""
        if not self.inputs.get("job_name"):
            raise LofarexecError("no job name: pass -j/--job-name")
        self.inputs.setdefault("start_time", _now())
        self.logger.debug("Pipeline start time: %s", self.inputs["start_time"])
        if not hasattr(self, "config"):
            self.config = self._read_config()
        # the plugins found for the check are the run's (one search, one import of each)
        self._installed_plugins = _check_config_names(self.config, self.config_sections)
        self._inputs_from_config(self.config)
        if not self.inputs.get("dry_run") and getattr(self, "_run_lock", None) is None:
            # before the log file: a refused second run must not write into the first one's
            self._run_lock: RunLock | None = RunLock(self.config.job_directory).__enter__()
        formatter = _log_formatter(self.config)
        for handler in logging.getLogger().handlers:
            if getattr(handler, "_lofarexec_console", False):
                handler.setFormatter(formatter)
        if self.inputs.get("dry_run"):  # a dry run writes nothing, not even a log file
            self.logger.debug("dry run: no log file written")
        else:
            _add_log_file(self.config.log_file, formatter)
        return 0

    # -- command line --------------------------------------------------------------------------
    def option_parser(self) -> argparse.ArgumentParser:
        """The recipe's options; extend with ``parser.add_argument`` in a subclass."""
        parser = RecipeArgumentParser(prog=os.path.basename(self.__file__),
                                      description=(type(self).__doc__ or "").strip() or None)
        parser.add_argument("-j", "--job-name", required=True, help="name of this pipeline job")
        parser.add_argument("-c", "--config", help="pipeline.cfg to use")
        parser.add_argument("-d", "--debug", action="store_true", help="show debug messages")
        parser.add_argument("-v", "--verbose", action="store_true", help="show info messages")
        parser.add_argument("-r", "--runtime-directory", help="override runtime_directory")
        parser.add_argument("-w", "--working-directory", help="override working_directory")
        parser.add_argument("-n", "--dry-run", action="store_true",
                            help="show the jobs that would run; start none")
        parser.add_argument("--start-time", help="start time of the pipeline run (ISO 8601)")
        parser.add_argument("--quiet", action="store_true",
                            help="no live progress (bar on a terminal, progress lines in a log)")
        parser.add_argument("--resume", action="store_true",
                            help="run only the jobs that did not succeed in an earlier run of "
                                 "this job name (matched on host, command and arguments)")
        parser.add_argument("args", nargs="*", help="recipe arguments (e.g. a mapfile)")
        self._add_input_options(parser)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the recipe as a program; return its exit status."""
        options = self.option_parser().parse_args(argv)
        self.inputs.update({key: value for key, value in vars(options).items()
                            if value is not None})
        _collect_once_at_exit()
        _set_up_console(debug=options.debug, verbose=options.verbose)
        with _StopOnSignals(self):
            try:
                status = self.go()
            except (PipelineQuit, _Stopped) as exc:
                self.logger.error("recipe %s stopped: %s", self.name, exc)
                return 1
            except (LofarexecError, ValueError) as exc:
                self.logger.error("recipe %s failed: %s", self.name, exc)
                return 1
            except Exception as exc:  # a recipe's own bug: one line; the traceback with -d
                self.logger.error("recipe %s failed: %s: %s", self.name, type(exc).__name__, exc)
                self.logger.debug("recipe %s: the traceback", self.name, exc_info=True)
                return 1
            finally:
                self._release_run_lock()
        status = int(status or 0)
        if status == 0:
            self._check_outputs()
            self.logger.info("recipe %s completed", self.name)
        else:
            self.logger.error("recipe %s failed (status %d)", self.name, status)
        print("Results:")
        for key, value in self.outputs.items():
            if key not in REPORT_OUTPUTS:  # the per-job reports are for programs, not the console
                print(f"{key} = {value}")
        sys.stdout.flush()
        return status

    def _release_run_lock(self) -> None:
        lock = getattr(self, "_run_lock", None)
        if lock is not None:
            self._run_lock = None
            lock.__exit__(None, None, None)

    def _read_config(self) -> PipelineConfig:
        recipe_folder = Path(self.__file__).parent
        if recipe_folder.name == "master":  # the seed's layout: <recipe dir>/master/<name>.py
            recipe_folder = recipe_folder.parent
        working = self.inputs.get("working_directory") or os.getcwd()
        path = find_config(self.inputs.get("config"), recipe_directory=recipe_folder,
                           working_directory=working)
        config = load_config(path, job_name=self.inputs["job_name"],
                             start_time=self.inputs["start_time"], cwd=os.getcwd())
        if self.inputs.get("runtime_directory"):
            config.set("DEFAULT", "runtime_directory", self.inputs["runtime_directory"])
        if self.inputs.get("working_directory"):
            config.set("DEFAULT", "working_directory", self.inputs["working_directory"])
        return config


class ErrorFlag(threading.Event):
    """The recipe's ``error`` event; keeps the seed's ``isSet()`` spelling without a warning."""

    def isSet(self) -> bool:  # noqa: N802 - the seed's name
        return self.is_set()


class RemoteCommandRecipeMixIn:
    """Gives a recipe :meth:`_schedule_jobs`; mix into a :class:`BaseRecipe` subclass."""

    def _schedule_jobs(
        self, jobs: Sequence[ComputeJob], max_per_node: int | None = None,
        fail_fast: bool = False,
    ) -> dict[int, ComputeJob]:
        """Run ``jobs`` on their hosts, at most ``max_per_node`` at once on each; block until all
        have ended. Sets ``self.error`` when any job did not succeed. Returns ``{id: job}``.

        With ``fail_fast`` one job that does not succeed kills all the others at once. Afterwards
        ``self.outputs['return_xml']`` and ``['return_json']`` report every job.
        """
        from lofarexec.run.runner import JobRunner  # deferred: light recipe import

        recipe: Any = self
        runner = JobRunner(recipe.config, recipe_name=recipe.name, error=recipe.error,
                           logger=recipe.logger, dry_run=bool(recipe.inputs.get("dry_run")),
                           resume=bool(recipe.inputs.get("resume")),
                           progress=not recipe.inputs.get("quiet"),
                           installed_plugins=getattr(recipe, "_installed_plugins", None))
        recipe._active_runner = runner
        self._runner_ready().set()
        try:
            return runner.schedule(jobs, max_per_node=max_per_node, fail_fast=fail_fast)
        finally:
            self._runner_ready().clear()
            recipe._active_runner = None
            # imported once the jobs ran: a node's start does not wait for xml.etree
            from lofarexec.run.outputs import return_json, return_xml

            recipe.outputs["return_xml"] = return_xml(jobs)
            recipe.outputs["return_json"] = return_json(jobs)


    def _board(self, timeout: float | None = None) -> JobExchange:
        """The value board of the batch ``_schedule_jobs`` is running, for a controller thread
        of the recipe: ``put(key, value)`` for the nodes' ``wait_for``, ``get(key)`` for what
        they ``publish``. Waits until a batch runs; :class:`~lofarexec.errors.WaitTimeout` (a
        TimeoutError) if none does in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._runner_ready().wait(timeout):
            raise WaitTimeout("no batch of jobs started")
        runner = getattr(self, "_active_runner", None)
        if runner is None:
            raise WaitTimeout("the batch of jobs already ended")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return runner.exchange_when_running(remaining)

    def _stop_jobs(self, reason: str) -> None:
        """Kill the batch in progress (``_schedule_jobs`` then raises PipelineQuit)."""
        runner = getattr(self, "_active_runner", None)
        if runner is not None:
            runner.kill(reason)

    def _runner_ready(self) -> threading.Event:
        with _READY_LOCK:  # a controller thread may ask before _schedule_jobs has begun
            ready = getattr(self, "_runner_ready_event", None)
            if ready is None:
                ready = self._runner_ready_event = threading.Event()
            return ready


#: The signals that stop a recipe: Ctrl-C, ``kill``, and a terminal that went away (SIGHUP,
#: which would otherwise end the process with no log line and no journal end lines).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _StopOnSignals:
    """While a recipe runs: SIGINT/SIGTERM/SIGHUP kill the batch in progress, or quit outright."""

    def __init__(self, recipe: BaseRecipe) -> None:
        self.recipe = recipe
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.recipe.logger.warning("received %s: stopping the recipe", name)
        runner = getattr(self.recipe, "_active_runner", None)
        if runner is not None:
            runner.kill(name)  # its jobs are killed (or never started), then PipelineQuit
            return
        # No batch: unwind the recipe's own code. A BaseException, so that no `except
        # Exception` on the way (a plugin import, a recipe's own handler) can swallow it.
        raise _Stopped(f"received {name}")


class _Stopped(KeyboardInterrupt):
    """A signal arrived while no batch of jobs was running."""


def _check_config_names(config: PipelineConfig, recipe_sections: Sequence[str]) -> PluginManager:
    """Stop at a misspelt section or key, before any job runs (see lofarexec.config.known);
    return the plugin manager built for the check, for the runner to reuse."""
    from lofarexec.plugin.confignames import check_config_names  # deferred: light recipe import
    from lofarexec.plugin.manager import build_plugin_manager

    manager = build_plugin_manager()
    check_config_names(config, recipe_sections, method=config.remote_method, manager=manager)
    return manager


def _set_up_console(*, debug: bool, verbose: bool) -> None:
    root = logging.getLogger()
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    if not any(getattr(handler, "_lofarexec_console", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        handler._lofarexec_console = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for handler in root.handlers:
        if getattr(handler, "_lofarexec_console", False):
            handler.setLevel(level)
    root.setLevel(min(level, root.level) if root.level else level)


def _log_formatter(config: PipelineConfig) -> logging.Formatter:
    """``[logging] format`` and ``datefmt`` when the config sets them; the seed's otherwise."""
    return logging.Formatter(
        config.get("logging", "format", fallback=LOG_FORMAT, raw=True),
        config.get("logging", "datefmt", fallback=DATE_FORMAT, raw=True),
    )


def _add_log_file(path: Path | None, formatter: logging.Formatter) -> None:
    """Also log everything (debug included) to the configured ``[logging] log_file``."""
    if path is None:
        return
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _LogFileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc}; make its "
                          "folder writable, or name another file", section="logging",
                          key="log_file") from None
    handler.setFormatter(formatter)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


class _LogFileHandler(logging.FileHandler):
    """The log file; a record it cannot write (a full disk) is said once, not a traceback each.

    logging's own handleError prints a traceback for every record that fails, tens of thousands
    on a full disk; the console handler still shows every record.
    """

    failed = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.failed += 1
        if self.failed == 1:
            error = sys.exc_info()[1]
            reason = getattr(error, "strerror", None) or error
            sys.stderr.write(f"lofarexec: cannot write the log file {self.baseFilename} "
                             f"({reason}): records are missing from it while this lasts; the "
                             "console still shows them\n")


def _collect_once_at_exit() -> None:
    """Make the interpreter's exit after a recipe quick: at exit, collect the garbage once, then
    freeze what is still alive (:func:`gc.freeze`), so that tearing the modules down does not
    search the whole heap for cycles again, which takes ~10 ms after a run (issue 17).

    Every object that is garbage when the exit begins is still collected, its finalizers run;
    only cycles among objects still reachable from modules then are not looked for, which
    Python never promised to finalize at exit. Registered once per process, by :meth:`main`.
    """
    global _EXIT_COLLECTION_REGISTERED
    if not _EXIT_COLLECTION_REGISTERED:
        _EXIT_COLLECTION_REGISTERED = True
        atexit.register(_collect_and_freeze)


_EXIT_COLLECTION_REGISTERED = False


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()


def _now() -> str:
    return datetime.datetime.now().replace(microsecond=0).isoformat()

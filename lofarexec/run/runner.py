"""One ``_schedule_jobs`` call, end to end: backend, log receiver, hooks, scheduler.

The recipe layer owns the CLI and the logging set-up; this module owns what happens between
"here is a list of jobs" and "every job has a final state": it picks the backend named by
``[remote] method``, starts the run's :class:`~lofarexec.channel.logserver.LogServer`, builds
each job's :class:`~lofarexec.backend.LaunchRequest` (argv, node environment, token), hands the
batch to the :class:`~lofarexec.run.scheduler.Scheduler` and relays its events to the plugin
hooks. A job's token is withdrawn once the job has its final state and its node's channel is
closed; for a node never heard from, a moment later (a late hello may be on its way: see
:mod:`lofarexec.channel.jobtable`), so a run holds channel state only for its running jobs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import resource
import shlex
import socket
import threading
from collections.abc import Sequence

from lofarexec.backend import Backend, LaunchRequest
from lofarexec.channel.exchange import JobExchange
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import ENV_JOB_DIRECTORY, ENV_NODE_ARGUMENTS, ENV_RUN
from lofarexec.config import PipelineConfig
from lofarexec.config.hostlist import allocation_hosts
from lofarexec.context import RunContext
from lofarexec.errors import ConfigError, JobListError, PipelineQuit, WaitTimeout
from lofarexec.job import ComputeJob, launch_arguments
from lofarexec.plugin.manager import PluginManager, build_plugin_manager
from lofarexec.run.audit import EndOfRunAudit
from lofarexec.run.dryrun import show_dry_run
from lofarexec.run.hooks import HookRelay
from lofarexec.run.idle import IdleWatch, idle_limit
from lofarexec.run.journal import JournalWriter
from lofarexec.run.progress import DEFAULT_INTERVAL, ProgressReporter
from lofarexec.run.resume import resume_batch
from lofarexec.run.retry import scheduler_options
from lofarexec.run.runlock import RunLock
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.run.summary import RunReporter

#: The backend used when ``[remote] method`` is absent: ssh, the seed's default transport.
DEFAULT_METHOD = "ssh"
#: Variables the node gets from the control node's environment when they are set there.
FORWARDED_VARIABLES = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "LOFARROOT")
#: At the end of a batch, a node's log channel that delivers nothing for this many seconds is
#: given up (with a warning saying how much is lost); while it delivers, the batch waits.
LOG_STALL_SECONDS = 10.0
#: The same, when the run is being stopped: a stop must not wait long for a stuck channel.
LOG_STALL_SECONDS_STOPPING = 1.0


__all__ = ["JobRunner", "RunContext", "node_environment"]  # RunContext: its old home


class JobRunner:
    """Runs batches of jobs for one recipe; ``kill`` stops the batch in progress."""

    def __init__(
        self,
        config: PipelineConfig,
        *,
        recipe_name: str,
        error: threading.Event,
        logger: logging.Logger | None = None,
        plugin_manager: PluginManager | None = None,
        installed_plugins: PluginManager | None = None,
        dry_run: bool = False,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.resume = resume
        """Skip the jobs that succeeded in an earlier run of this job name (``--resume``)."""
        self.recipe_name = recipe_name
        self.error = error
        self.logger = logger or logging.getLogger(recipe_name)
        self.plugins = plugin_manager
        self._installed_plugins = installed_plugins  # found already (the recipe's check): reused
        self.dry_run = dry_run
        self.progress = progress
        self._scheduler: Scheduler | None = None
        self._kill_reason: str | None = None
        self._exchange: JobExchange | None = None
        self._exchange_ready = threading.Event()

    def exchange_when_running(self, timeout: float | None = None) -> JobExchange:
        """The job channel's board of the batch in progress (for a recipe's controller thread:
        ``put`` values for nodes, ``get`` theirs); waits until a batch has started, and raises
        :class:`~lofarexec.errors.WaitTimeout` if none has after ``timeout`` seconds."""
        if not self._exchange_ready.wait(timeout) or self._exchange is None:
            raise WaitTimeout("no batch of jobs started")
        return self._exchange

    def kill(self, reason: str) -> None:
        """Stop the batch in progress, or the one being set up (it then starts no job and
        ends in PipelineQuit). Safe in signal handlers: it only records or forwards."""
        self._kill_reason = reason
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.kill(reason)

    def schedule(
        self, jobs: Sequence[ComputeJob], max_per_node: int | None = None,
        fail_fast: bool = False,
    ) -> dict[int, ComputeJob]:
        """Run ``jobs`` and block until each has a final state; ``{job.id: job}`` in input order.

        With ``fail_fast`` the first job that does not succeed stops the others at once
        (running ones are killed, queued ones not started), as processes that work together
        need.
        """
        if type(jobs) is not list:  # a recipe's list is used as it is (8 bytes a job)
            jobs = list(jobs)
        for index, job in enumerate(jobs):
            job.id = index  # the ids the hooks and the report use (the scheduler's too)
        done_before = resume_batch(  # a dry run reads the journal too, to show what would run
            jobs, self.config.job_directory if self.resume else None, self.logger)
        argv_heads = _split_commands(jobs)
        plans = launch_arguments(jobs, self.config.node_arguments)
        if self.plugins is None:
            self.plugins = build_plugin_manager([JournalWriter(), RunReporter(self.logger),
                                                 *self._progress()],
                                                installed=self._installed_plugins)
        method = self.config.remote_method or DEFAULT_METHOD
        backend_class = self.plugins.backends.get(method)
        settings = self.config.section_settings(method, backend_class.Settings)
        backend = backend_class(settings)
        limits = self._limits(max_per_node)
        pool = allocation_hosts(self.config.get("cluster", "hosts", fallback=None),
                                source=str(self.config.path))
        raise_open_files_limit(self.logger)
        bind, advertise = self._log_addresses(backend_class, jobs, pool)
        if self.dry_run:
            return self._dry_run(jobs, backend, limits, pool, (advertise or bind, "<port>"),
                                 argv_heads, plans, done_before)
        audit = EndOfRunAudit(self.config, self.recipe_name, self.logger)
        with RunLock(self.config.job_directory), LogServer(
                bind_address=bind, advertise_address=advertise, recipe_name=self.recipe_name,
                max_message_bytes=self.config.max_message_bytes,
                exchange=JobExchange(self.config.max_kept_bytes)) as log_server:
            host, port = log_server.address
            self.logger.debug("Logging to %s:%d", host, port)
            self._exchange = log_server.exchange
            self._exchange_ready.set()
            context = RunContext(self.recipe_name, method, self.config.job_directory,
                                 (host, port), dry_run=False)
            environment = node_environment(self.config)
            environment[ENV_JOB_DIRECTORY] = str(context.job_directory)
            environment[ENV_RUN] = audit.marker  # what the end-of-run audit looks for
            hooks = self.plugins.hook
            # One mapping per (argument mode, cores): backends encode each mapping once.
            variants: dict[tuple[bool, int | None], dict[str, str]] = {}

            port_text = str(port)

            def prepare(job: ComputeJob) -> LaunchRequest:
                assert job.id is not None and job.host is not None  # placed by now
                self.logger.debug("Dispatching command to %s with %s", job.host, method)
                plan = plans[job.id]
                if plan is None:
                    log_server.exchange.store_arguments(job.id, job.arguments)
                argv = node_argv(argv_heads[job.command], job.id, plan, host, port_text)
                cores = job.cores
                key = (plan is None, cores)
                variant = variants.get(key)
                if variant is None:
                    variant = variants[key] = job_variables(environment, plan, cores)
                return LaunchRequest(
                    job_id=job.id, host=job.host, argv=argv, environment=variant, cores=cores,
                    token=log_server.register_job(job.id, job.host),
                    recipe_name=self.recipe_name,
                )

            relay = HookRelay(hooks, context, log_server, self.logger)
            watch = IdleWatch(relay, idle_limit(self.config), log_server, self.logger)
            scheduler = Scheduler(backend, prepare, limits=limits, error=self.error,
                                  observer=watch if watch.limit is not None else relay,
                                  job_timeout=self.config.job_timeout, pool=pool,
                                  fail_fast=fail_fast, done_before=done_before,
                                  **scheduler_options(self.config))
            watch.expire = scheduler.expire
            hooks.lofarexec_run_started(run=context, jobs=jobs)
            try:
                with watch:
                    self._run(scheduler, backend, jobs, audit)
            finally:
                plans.clear()  # no job starts any more: the report gets its memory
                self._exchange_ready.clear()
                log_server.exchange.close()
                relay.drain_channels(LOG_STALL_SECONDS if self._kill_reason is None
                                     else LOG_STALL_SECONDS_STOPPING)
                hooks.lofarexec_run_finished(run=context, jobs=jobs, error=self.error.is_set())
        if self._kill_reason is not None:  # a stop that came as the batch was ending
            raise PipelineQuit(f"run stopped ({self._kill_reason})")
        return {job.id: job for job in jobs if job.id is not None}

    def _dry_run(self, jobs: list[ComputeJob], backend: Backend, limits: Limits,
                 pool: Sequence[str] | None, log_address: tuple[str, str],
                 argv_heads: dict[str, tuple[str, ...]],
                 plans: Sequence[Sequence[str] | None],
                 done_before: frozenset[int]) -> dict[int, ComputeJob]:
        """Show the plan and the first jobs' argv (:mod:`lofarexec.run.dryrun`): no lock, no
        log receiver, no backend ``open``, no process, no file; the hooks still hear of it.
        With ``--resume`` the jobs that succeeded before are left out, as the run would."""
        context = RunContext(self.recipe_name, backend.name, self.config.job_directory,
                             (log_address[0], 0), dry_run=True)
        environment = {**node_environment(self.config),
                       ENV_JOB_DIRECTORY: str(context.job_directory)}

        def request_for(job: ComputeJob, host: str, token: str) -> LaunchRequest:
            assert job.id is not None
            plan = plans[job.id]
            return LaunchRequest(
                job_id=job.id, host=host, cores=job.cores, token=token,
                argv=node_argv(argv_heads[job.command], job.id, plan, *log_address),
                environment=job_variables(environment, plan, job.cores),
                recipe_name=self.recipe_name)

        assert self.plugins is not None
        self.plugins.hook.lofarexec_run_started(run=context, jobs=jobs)
        try:
            show_dry_run(jobs, backend, limits, pool, request_for, skipped=done_before)
            for index, job in enumerate(jobs):  # the log's word for each job, as ever
                if index not in done_before:
                    self.logger.info("dry run: would run %s on %s", job.command, job.host)
        finally:
            self.plugins.hook.lofarexec_run_finished(run=context, jobs=jobs, error=False)
        return {job.id: job for job in jobs if job.id is not None}

    def _run(self, scheduler: Scheduler, backend: Backend, jobs: list[ComputeJob],
             audit: EndOfRunAudit) -> None:
        self._scheduler = scheduler
        if self._kill_reason is not None:  # stopped while the batch was being set up
            scheduler.kill(self._kill_reason)
        try:
            backend.open()
            scheduler.run(
                jobs, on_waiting=lambda: self.logger.info("Waiting for compute threads...")
            )
            if self._kill_reason is None:  # a stop must not wait for an audit
                audit.run(backend, jobs)
        finally:
            self._scheduler = None
            backend.close()

    def _progress(self) -> list[ProgressReporter]:
        """The live progress plugin, unless ``--quiet``; ``[logging] progress_interval`` sets
        the seconds between progress lines when not on a terminal."""
        if not self.progress:
            return []
        interval = self.config.get_float("logging", "progress_interval",
                                         fallback=DEFAULT_INTERVAL, minimum=0.001)
        return [ProgressReporter(self.logger, interval=interval)]

    def _limits(self, max_per_node: int | None) -> Limits:
        """The limits of this batch; a ``max_per_node`` below 1 is a JobListError (the config's
        own values are checked as they are read)."""
        per_host = max_per_node if max_per_node is not None else self.config.max_per_node
        return Limits(per_host, self.config.max_per_node_overrides, self.config.max_jobs)

    def _log_addresses(self, backend_class: type[Backend], jobs: Sequence[ComputeJob],
                       pool: Sequence[str] | None) -> tuple[str, str | None]:
        """Where the log receiver listens, and the address nodes are told to use: for a remote
        backend the advertised address, bound by default (never every interface unasked)."""
        if getattr(backend_class, "local_only", False):
            bind = self.config.get("logging", "bind_address", fallback="127.0.0.1")
            advertise = self.config.get("logging", "advertise_address", fallback="") or None
            return bind, advertise
        configured = self.config.get("logging", "advertise_address", fallback="") or None
        bind = self.config.get("logging", "bind_address", fallback="") or None
        if configured is None and bind not in (None, "0.0.0.0", "::"):
            configured = bind  # an explicit bind address is what nodes are told, as before
        advertise = configured or _this_host_address()
        if _is_loopback(advertise):
            hosts = {job.host for job in jobs if job.host} | set(pool or ())
            where = f"{self.config.path}: [logging]"
            if all(_is_this_machine(host) for host in hosts):
                self.logger.warning("%s the log address %s is loopback: only nodes on this "
                                    "machine can reach it", where, advertise)
            elif configured is None:
                raise ConfigError(
                    f"{where} this machine's name resolves to the loopback address {advertise}, "
                    f"which nodes on other hosts cannot reach: set advertise_address to an "
                    "address they can reach")
            else:
                self.logger.warning("%s advertise/bind address %s is loopback: nodes on other "
                                    "hosts cannot send their logs", where, advertise)
        return bind or advertise, advertise


def raise_open_files_limit(logger: logging.Logger) -> None:
    """Raise the soft open-files limit to the hard one: each running job holds descriptors
    (its log channel, its transport's), and a low soft limit starves the log receiver."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit some kernels refuse
            logger.debug("cannot raise the open files limit from %d: %s", soft, exc)
        else:
            logger.debug("open files limit raised from %d to %s", soft, hard)


def _is_loopback(address: str) -> bool:
    try:
        resolved = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0]
        return ipaddress.ip_address(resolved).is_loopback
    except (OSError, ValueError):
        return False


def _is_this_machine(host: str) -> bool:
    """True for a name of this machine or one that resolves to a loopback address."""
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    return host in names or _is_loopback(host)


def node_environment(config: PipelineConfig) -> dict[str, str]:
    """The variables every node gets: search paths from ``[deploy]`` prepended, no ``None``s."""
    environment = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
    extra = config.get_list("remote", "forward_environment", fallback=[])
    environment.update({name: os.environ[name] for name in extra if name in os.environ})
    for name, prefix in (("PYTHONPATH", config.engine_ppath),
                         ("LD_LIBRARY_PATH", config.engine_lpath)):
        parts = [*prefix, *filter(None, environment.get(name, "").split(os.pathsep))]
        if parts:
            environment[name] = os.pathsep.join(parts)
    return environment


def node_argv(head: Sequence[str], job_id: int, plan: Sequence[str] | None, log_host: str,
              log_port: str) -> tuple[str, ...]:
    """The node's argv: the seed's ``<command> <log host> <log port> <args...>``, or for
    stored arguments (``plan`` None) ``<command> <job id> <log host> <log port>``."""
    if plan is None:
        return (*head, str(job_id), log_host, log_port)
    return (*head, log_host, log_port, *plan)


def job_variables(environment: dict[str, str], plan: Sequence[str] | None,
                  cores: int | None) -> dict[str, str]:
    """The node variables of a job: the run's, how its arguments come, its cores' threads."""
    return {**environment, ENV_NODE_ARGUMENTS: "stored" if plan is None else "command_line",
            **({"OMP_NUM_THREADS": str(cores)} if cores else {})}


def _split_commands(jobs: Sequence[ComputeJob]) -> dict[str, tuple[str, ...]]:
    """Split every distinct command once, so a malformed one fails before any job starts."""
    heads: dict[str, tuple[str, ...]] = {}
    for index, job in enumerate(jobs):
        if job.command not in heads:
            try:
                heads[job.command] = tuple(shlex.split(job.command))
            except ValueError as exc:
                raise JobListError(
                    f"job {index}: cannot split command {job.command!r}: {exc}"
                ) from None
            if not heads[job.command]:
                raise JobListError(f"job {index}: the command is empty")
    return heads


def _this_host_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"

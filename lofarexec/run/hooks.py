"""The run's hook relay: scheduler events become plugin hook calls, and each job's channel ends.

The runner builds one :class:`HookRelay` per ``_schedule_jobs`` call and hands it to the
scheduler as its observer. When a job ends it takes the node's outputs into the results, says
why a failed job failed (with the end of its stderr), and notes a node that never reached the
log server; at the batch's end :meth:`HookRelay.drain_channels` waits for the channels still open.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import find_unreached
from lofarexec.context import RunContext
from lofarexec.job import SUCCEEDED, ComputeJob, JobState

#: How many of a failed job's last stderr lines are repeated in the master's log.
_STDERR_LINES = 10


class HookRelay:
    """Turns scheduler events into plugin hook calls, and ends each job's channel."""

    def __init__(self, hooks: Any, context: RunContext, log_server: LogServer,
                 logger: logging.Logger) -> None:
        # Called once or twice per job: each is bound to its implementations once per run.
        self._started = job_hook(hooks.lofarexec_job_started, context)
        self._finished = job_hook(hooks.lofarexec_job_finished, context)
        self._context = context
        self._log_server = log_server
        self._logger = logger

    def job_started(self, job: ComputeJob) -> None:
        for call in self._started:
            call(job)

    def job_finished(self, job: ComputeJob) -> None:
        results = job.results
        if job.id is not None and results.get("attempts"):  # not_started: never registered
            said_hello, _ = self._log_server.job_ended(job.id)
            if not said_hello:
                self._check_log_channel(job)
            outputs = self._log_server.exchange.take_outputs(job.id)
            if outputs:
                _merge_outputs(self._logger, job, outputs)
            if results["state"] != SUCCEEDED:
                _log_failure(self._logger, job)
        for call in self._finished:
            call(job)

    def _check_log_channel(self, job: ComputeJob) -> None:
        """A lofarexec node that never said hello wrote its records to stderr: the job stays as
        its exit made it (its work is done), its reason and a warning say where the logs went.
        A plain program never connects and writes no such line: nothing to say about it."""
        unreached = find_unreached(job.results.get("errors") or "")
        if unreached is None:
            return
        address, cause = unreached
        note = (f"its node could not reach the log server at {address}"
                + (f" ({cause})" if cause else "")
                + ": its log records went to its stderr, whose end is in results['errors']")
        job.results.add_reason(note)
        self._logger.warning("job %s on %s: %s; check [logging] advertise_address and that the "
                             "host can connect to it", job.id, job.host, note)
        if job.results["state"] == JobState.SUCCEEDED.value:  # a failure's are logged below
            _log_stderr(self._logger, logging.WARNING, job)

    def drain_channels(self, stall_seconds: float) -> None:
        """The nodes' last records come before "completed": wait for the channels still open
        to close for as long as they deliver; one that delivers nothing for ``stall_seconds``
        is given up with a warning (the log server says how much it loses as it stops). Their
        tokens end with the log server, right after the batch."""
        server = self._log_server
        pending = collections.deque(server.ended_jobs())  # a channel open, or a hello that may come
        seen = {job_id: _bytes_received(server, job_id) for job_id in pending}
        deadline = time.monotonic() + stall_seconds
        while pending:  # thousands may have ended within the late-hello time: popleft, not pop(0)
            if server.wait_job_closed(pending[0], max(0.0, deadline - time.monotonic())):
                pending.popleft()
                continue
            for job_id in list(pending):  # a stall period passed: who delivered nothing?
                now = _bytes_received(server, job_id)
                if now is None:  # forgotten: nothing more will come
                    pending.remove(job_id)
                elif now == seen[job_id]:
                    pending.remove(job_id)
                    self._logger.warning(
                        "job %s: its node's log channel delivered nothing for %g s after the "
                        "job ended; giving up on it", job_id, stall_seconds)
                seen[job_id] = now
            deadline = time.monotonic() + stall_seconds


def _bytes_received(server: LogServer, job_id: int) -> int | None:
    """What the job delivered so far; None once it is forgotten (a late-hello time over)."""
    try:
        return server.bytes_received(job_id)
    except KeyError:
        return None


def job_hook(hook: Any, context: RunContext) -> list[Callable[[ComputeJob], object]]:
    """A per-job hook's implementations, each bound to ``context``: calling them in turn is
    what pluggy's call does (same order, same arguments, an exception stops the rest), without
    its generic work per call, which costs more than a short job's own hooks. Empty when no
    plugin implements the hook; one call through pluggy when an implementation is a wrapper.
    Plugins registered after the run started are not called for its jobs."""
    impls = hook.get_hookimpls()
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        return [lambda job: hook(run=context, job=job)]
    return [_bound(impl.function, tuple(impl.argnames), context) for impl in reversed(impls)]


def _bound(function: Callable[..., object], argnames: tuple[str, ...],
           context: RunContext) -> Callable[[ComputeJob], object]:
    if argnames == ("job",):
        return function
    if argnames == ("run", "job"):
        return functools.partial(function, context)
    values = {"run": context}
    return lambda job: function(*(job if name == "job" else values[name] for name in argnames))


def _merge_outputs(logger: logging.Logger, job: ComputeJob, outputs: dict[str, Any]) -> None:
    """Put a node's outputs into ``job.results``; lofarexec's own keys are never replaced."""
    clashing = job.results.add_outputs(outputs)
    if clashing:
        logger.warning("job %s: outputs %s not taken: those results keys are lofarexec's",
                       job.id, ", ".join(clashing))


def _log_failure(logger: logging.Logger, job: ComputeJob) -> None:
    """Say why a job did not succeed, with the end of what it wrote to stderr."""
    results = job.results
    logger.error("job %s on %s %s: %s", job.id, job.host, results["state"], results.get("reason"))
    _log_stderr(logger, logging.ERROR, job)


def _log_stderr(logger: logging.Logger, level: int, job: ComputeJob) -> None:
    """Repeat the last lines of the job's stderr in the master's log."""
    for line in (job.results.get("errors") or "").rstrip().splitlines()[-_STDERR_LINES:]:
        logger.log(level, "job %s stderr: %s", job.id, line)

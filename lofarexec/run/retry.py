"""Which ended attempts run again, and after how long (``[remote] retries``, ``retry_exit_codes``).

A transport error (the host could not be reached, authentication was refused, the connection
dropped, the agent died, the launcher refused) says nothing about the job, so it is retried up to
``retries`` times; a node that ran and exited non-zero is retried only for the statuses listed in
``retry_exit_codes`` (a node's failure is usually its data's, and running it again only repeats
it). A killed or timed-out job is never retried: someone decided it should stop. Waits grow
exponentially with jitter, so that many jobs failing together do not come back together.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from typing import Any

from lofarexec.backend import Outcome
from lofarexec.config import PipelineConfig
from lofarexec.job import ComputeJob
from lofarexec.run.halt import HaltPolicy
from lofarexec.run.hosthealth import DEFAULT_HOST_FAILURES

__all__ = ["DEFAULT_RETRIES", "FIRST_DELAY", "MAX_DELAY", "RetryPolicy", "host_failed",
           "scheduler_options"]

#: ``[remote] retries`` when absent: attempts after the first, for transport errors.
DEFAULT_RETRIES = 2
#: Seconds before the first retry (or the first probe of a paused host); doubled each time.
FIRST_DELAY = 1.0
#: The longest wait between two attempts, in seconds.
MAX_DELAY = 60.0


# How every backend says that the host answered but could not execute the node program
# (lofarexec.testing.backend_promises.MISSING_PROGRAM_REASON), maybe after a "host: " prefix.
_PROGRAM_NOT_STARTED = re.compile(r"(?:^|: )cannot start '[^']*': ")


def host_failed(outcome: Outcome) -> bool:
    """Whether the transport failed: a transport error other than "the host ran its launcher,
    which could not execute the program" (a missing or non-executable node script is the
    job's own failure: the host is fine, and running it again would fail the same way)."""
    error = outcome.transport_error
    return error is not None and _PROGRAM_NOT_STARTED.search(error) is None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and after how long an attempt that did not succeed runs again.

    ``jitter`` returns a number in [0, 1): a wait is ``first_delay * 2**(n-1)`` (at most
    ``max_delay``) times 0.5 to 1.0 of it; tests pass ``lambda: 1.0`` for exact waits.
    """

    retries: int = 0
    retry_exit_codes: frozenset[int] = frozenset()
    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    jitter: Callable[[], float] = random.random

    def allowed(self, job: ComputeJob) -> int:
        """Retries ``job`` may have: its own ``retries=`` argument, else the run's."""
        return self.retries if job.retries is None else job.retries

    def retries_outcome(self, job: ComputeJob, outcome: Outcome) -> bool:
        """Whether this ended attempt (not killed, not timed out) is worth another; the
        attempt count is ``job.results['attempts']``."""
        if job.results.get("attempts", 0) > self.allowed(job):
            return False
        if outcome.transport_error is not None:
            return host_failed(outcome)
        return outcome.returncode is not None and outcome.returncode in self.retry_exit_codes

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
        base = min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1))
        return base * (0.5 + self.jitter() / 2)


def scheduler_options(config: PipelineConfig) -> dict[str, Any]:
    """``pipeline.cfg``'s retry, host-health and halt keys as Scheduler arguments (read before
    any job starts, so a typo is one ConfigError line)."""
    retries = config.retries
    return {
        "retry": RetryPolicy(DEFAULT_RETRIES if retries is None else retries,
                             config.retry_exit_codes),
        "host_failures": config.host_failures or DEFAULT_HOST_FAILURES,
        "host_down_after": config.host_down_after,
        "halt": HaltPolicy(*config.halt),
    }

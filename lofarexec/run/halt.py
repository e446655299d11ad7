"""When a batch stops early: ``[remote] halt``, as GNU parallel's ``--halt``.

``never`` (the default) runs every job and only sets the run's error Event; ``soon,fail=N``
starts no new job once N jobs did not succeed and lets the running ones finish; ``now,fail=N``
kills those too. N is a count, or a percentage of the batch's jobs (``5%``). Jobs that never
started end as ``not_started`` with the reason. ``fail_fast=True`` is ``now,fail=1``.
"""

from __future__ import annotations

import dataclasses
import math

from lofarexec.config.values import parse_halt

__all__ = ["NEVER", "HaltPolicy", "halt_policy"]


@dataclasses.dataclass(frozen=True)
class HaltPolicy:
    """``mode`` is never, soon or now; the limit is ``count`` jobs, or ``percent`` of them."""

    mode: str = "never"
    count: int | None = None
    percent: float | None = None

    def limit(self, jobs: int) -> int | None:
        """Failed jobs that stop a batch of ``jobs``; None for never."""
        if self.mode == "never":
            return None
        if self.percent is not None:
            return max(1, math.ceil(jobs * self.percent / 100))
        return self.count

    def __str__(self) -> str:
        if self.mode == "never":
            return "never"
        limit = f"{self.percent:g}%" if self.percent is not None else str(self.count)
        return f"{self.mode},fail={limit}"


NEVER = HaltPolicy()


def halt_policy(text: str) -> HaltPolicy:
    """``[remote] halt`` text as a policy; ValueError completing "value 'x' ..." (a typo)."""
    return HaltPolicy(*parse_halt(text))

"""How many jobs may run at once: per host (with per-host overrides) and over all hosts."""

from __future__ import annotations

from collections.abc import Mapping

from lofarexec.errors import JobListError


class Limits:
    """How many jobs may run at once: per host (with overrides) and in total.

    ``None`` means no limit. A limit below 1 is a :class:`~lofarexec.errors.JobListError`
    (``pipeline.cfg`` values are checked when read, so this catches a recipe's ``max_per_node``).
    """

    def __init__(
        self,
        per_host: int | None = None,
        overrides: Mapping[str, int] | None = None,
        total: int | None = None,
    ) -> None:
        for value in (per_host, total, *(overrides or {}).values()):
            if value is not None and value < 1:
                raise JobListError(f"a job limit must be a positive number, not {value}")
        self.per_host = per_host
        # Host names compare without case, as DNS does (and pipeline.cfg lower-cases its keys).
        self.overrides = {host.lower(): limit for host, limit in (overrides or {}).items()}
        self.total = total

    def for_host(self, host: str) -> int | None:
        """The limit of ``host``: its override, else the per-host one (``None``: no limit)."""
        return self.overrides.get(host.lower(), self.per_host) if self.overrides else self.per_host

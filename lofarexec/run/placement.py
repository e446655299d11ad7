"""Placement of jobs created without a host: each goes to the least-loaded host of the pool."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence


class HostPool:
    """The host list for jobs without a host, as a heap ordered by running jobs.

    Entries are refreshed lazily: a popped entry whose load is stale is pushed back with the
    current load, so picking the least-loaded of 1,000 hosts costs a few heap operations, not a
    scan. ``running_on`` counts each host's running jobs (kept by the batch; an absent host has
    none); ``available(host)`` says whether it may take a host-less job now (room under its
    limit, and an empty queue of its own: jobs placed by data locality are never pushed back).
    """

    def __init__(self, hosts: Sequence[str], running_on: Mapping[str, int],
                 available: Callable[[str], bool]) -> None:
        self.running_on = running_on
        self.available = available
        self.order = itertools.count()
        self.heap = [(0, next(self.order), host) for host in dict.fromkeys(hosts)]

    def update(self, host: str) -> None:
        """``host``'s load changed: queue an entry with the new load (the old one goes stale)."""
        heapq.heappush(self.heap, (self.running_on.get(host, 0), next(self.order), host))

    def least_loaded(self) -> str | None:
        """The least-loaded available host, or None if there is none."""
        full, chosen = [], None
        seen: set[str] = set()
        while self.heap:
            load, order, host = heapq.heappop(self.heap)
            if host in seen:
                continue  # an older entry of a host already considered
            current = self.running_on.get(host, 0)
            if load != current:
                heapq.heappush(self.heap, (current, next(self.order), host))
                continue
            seen.add(host)
            if self.available(host):
                chosen = host
                break
            full.append((load, order, host))
        for entry in full:
            heapq.heappush(self.heap, entry)
        return chosen

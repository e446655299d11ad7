"""Which hosts may start jobs: a host whose transport failed is paused, probed, then resumed or
quarantined (``[remote] host_failures``, ``host_down_after``).

Why: when a host's sshd restarts or its link blips, every queued job would otherwise start at
once, fail at once and drain the host's queue in a second; a host that never answers would cost
a connect timeout per group of jobs. So the first transport failure pauses the host: its queued
jobs wait and nothing new starts there. After a backoff wait the host is *probed* by starting one
real job there (the next queued one): a backend's own probe could pass where the job's launch
fails, a job cannot, and a failed probe counts as that job's attempt. A probe that reaches its
node resumes the host; ``host_failures`` failures in a row (the first one included), or a host
down for ``host_down_after`` seconds, quarantine it for the rest of the batch.

A *connect timeout* quarantines the host at once (:func:`connect_timed_out`): the host did not
answer within the transport's connect timeout, so it is switched off, frozen, cut off, or its
sshd accepts and never speaks; each probe would cost that timeout again and find the same.
A refused connection (sshd restarting) or a dropped link may be a blip and is probed as above.

Used only by the thread holding the scheduler's processing role (no locks).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

__all__ = ["DEFAULT_HOST_FAILURES", "HostHealth", "connect_timed_out"]

#: ``[remote] host_failures`` when absent: transport failures in a row that quarantine a host.
DEFAULT_HOST_FAILURES = 3

# How the transports say that a connection attempt had no answer within the connect timeout:
# OpenSSH's "ssh: connect to host H port P: Connection timed out" (no answer to the TCP
# handshake) and "Connection timed out during banner exchange" (TCP accepted, no ssh banner);
# the paramiko backend's "cannot connect to H:P: timed out". Not OpenSSH's "Timeout, server H
# not responding" nor a read's "Connection timed out": those are a link lost after it worked.
_CONNECT_TIMED_OUT = re.compile(
    r"connect to host \S+ port \d+: Connection timed out"
    r"|Connection timed out during banner exchange"
    r"|cannot connect to \S+: timed out")


def connect_timed_out(error: str) -> bool:
    """Whether a transport ``error`` says that the host did not answer a connection attempt
    within the connect timeout (which quarantines the host at once)."""
    return _CONNECT_TIMED_OUT.search(error) is not None


@dataclasses.dataclass
class _Down:
    """A paused host: how often it failed in a row, since when, and its probe."""

    failures: int
    since: float
    last_error: str
    probe_due: bool = False
    probe: int | None = None  # the job now probing it


class HostHealth:
    """Paused and quarantined hosts of one batch; ``delay(n)`` is the wait after n failures."""

    def __init__(self, delay: Callable[[int], float], host_failures: int = DEFAULT_HOST_FAILURES,
                 down_after: float | None = None) -> None:
        self.delay = delay
        self.host_failures = host_failures
        self.down_after = down_after
        self.down: dict[str, _Down] = {}
        self.quarantined: dict[str, str] = {}
        """Quarantined hosts and the reason their jobs end with."""

    def accepts(self, host: str) -> bool:
        """Whether a job may start on ``host`` now: it is healthy, or its probe is due."""
        down = self.down.get(host)
        if down is None:
            return host not in self.quarantined
        return down.probe_due and down.probe is None

    def started(self, host: str, index: int) -> None:
        """Job ``index`` starts on ``host``: on a paused host, it is the probe."""
        down = self.down.get(host)
        if down is not None and down.probe_due and down.probe is None:
            down.probe = index

    def probe_due(self, host: str) -> None:
        """The backoff wait of ``host`` is over: one job may start there."""
        down = self.down.get(host)
        if down is not None:
            down.probe_due = True

    def answered(self, host: str, index: int) -> bool:
        """Job ``index`` reached its node on ``host``; True if that resumes a paused host (only
        the probe counts: a job started before the pause says nothing about the host now)."""
        down = self.down.get(host)
        if down is None or down.probe != index:
            return False
        del self.down[host]
        return True

    def failed(self, host: str, index: int, error: str, now: float) -> float | None:
        """Job ``index`` had a transport failure on ``host`` at ``now`` (monotonic seconds).

        Returns the seconds until the host's next probe when this paused it (again), or None
        when it changes nothing (the host was paused already) or quarantined the host (then
        ``quarantined[host]`` holds the reason).
        """
        if host in self.quarantined:
            return None
        if connect_timed_out(error):
            # probing would cost the connect timeout again, and find the same silence
            self.down.pop(host, None)
            self.quarantined[host] = (f"host {host} quarantined after a connect timeout (no "
                                      f"answer to a connection attempt): {error}")
            return None
        down = self.down.get(host)
        if down is None:
            down = self.down[host] = _Down(1, now, error)
        elif down.probe != index:
            down.last_error = error  # a job started before the pause: the same outage
            return None
        else:
            down.failures += 1
            down.last_error = error
            down.probe, down.probe_due = None, False
        too_long = self.down_after is not None and now - down.since >= self.down_after
        if down.failures >= self.host_failures or too_long:
            del self.down[host]
            self.quarantined[host] = (
                f"host {host} quarantined after {down.failures} transport failure"
                f"{'s' if down.failures != 1 else ''}"
                + (f" in {now - down.since:.0f} s" if too_long else "")
                + f": {down.last_error}")
            return None
        return self.delay(down.failures)

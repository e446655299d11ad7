"""Host lists from an allocation: where jobs without a host of their own may run.

A job created with ``host=None`` is placed by the scheduler on the least-loaded host of the
run's host list. The list comes from the first of these that is set:

1. ``[cluster] hosts`` in ``pipeline.cfg`` (``node1, node2`` or Slurm's range syntax);
2. ``$SLURM_JOB_NODELIST`` (Slurm's compressed form, e.g. ``node[01-04,07],gpu1``);
3. ``$PBS_NODEFILE`` (a file naming one host per line, a host once per slot).

Jobs that name a host keep it: data placement from a mapfile is never overridden.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from lofarexec.errors import ConfigError
from lofarexec.hostnames import host_name_problem

__all__ = ["HostListError", "allocation_hosts", "expand_hostlist", "read_pbs_nodefile"]

_RANGE_GROUP = re.compile(r"\[([^\]]*)\]")
_SLURM_VARIABLE = "SLURM_JOB_NODELIST"


class HostListError(ConfigError, ValueError):
    """A host list that cannot be expanded: an unbalanced bracket or a malformed range.

    Also a ``ValueError``, which :func:`expand_hostlist` raised before it was a ``ConfigError``.
    """


def expand_hostlist(text: str) -> list[str]:
    """Expand Slurm's host-list syntax: ``n[01-03,7],gpu[1-2]-ib`` -> n01 n02 n03 n7 gpu1-ib ...

    Zero padding follows the range's start (``[08-10]`` gives 08, 09, 10). Raises
    :class:`HostListError` on an unbalanced bracket or a malformed range, saying which;
    :func:`allocation_hosts` adds where the list came from.
    """
    try:
        return _expand(text)
    except ValueError as exc:
        raise HostListError(f"{exc}; fix the host list") from None


def _expand(text: str) -> list[str]:
    """The expansion itself; a plain ValueError saying what is malformed."""
    hosts: list[str] = []
    for item in _split_top_level(text):
        hosts.extend(_expand_item(item))
    for host in hosts:
        problem = host_name_problem(host)
        if problem is not None:
            raise ValueError(problem)
    return _unique(hosts)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, current = [], 0, []
    for character in text:
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
        if character == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(character)
    if depth:
        raise ValueError(f"unclosed '[' in host list {text!r}")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _expand_item(item: str) -> list[str]:
    match = _RANGE_GROUP.search(item)
    if match is None:
        return [item]
    prefix, suffix = item[: match.start()], item[match.end():]
    expanded = []
    for number in _expand_ranges(match.group(1), item):
        expanded.extend(_expand_item(prefix + number + suffix))
    return expanded


def _expand_ranges(ranges: str, item: str) -> list[str]:
    numbers = []
    for part in ranges.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"bad range {part.strip()!r} in host list item {item!r}")
        if not last:
            numbers.append(first)
            continue
        if int(last) < int(first):
            raise ValueError(f"range {part.strip()!r} runs backwards in {item!r}")
        width = len(first)
        numbers.extend(str(n).zfill(width) for n in range(int(first), int(last) + 1))
    return numbers


def read_pbs_nodefile(path: str) -> list[str]:
    """The hosts of a PBS/Torque node file, once each, in order of first appearance."""
    with open(path, encoding="utf-8") as nodefile:
        return _unique(line.strip() for line in nodefile if line.strip())


def allocation_hosts(
    configured: str | None, environ: Mapping[str, str] | None = None, *, source: str = ""
) -> list[str]:
    """The run's host list (see the module docstring); empty when none is set anywhere.

    ``configured`` is the raw ``[cluster] hosts`` value; ``source`` (the file it is from) names
    it in errors. A malformed list is a :class:`HostListError` naming ``[cluster] hosts`` or
    ``$SLURM_JOB_NODELIST``; an unreadable ``$PBS_NODEFILE`` is a :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    if configured:
        try:
            return _expand(configured)
        except ValueError as exc:
            raise HostListError(f"{exc}; fix the host list", filename=source or None,
                                section="cluster", key="hosts") from None
    if environ.get(_SLURM_VARIABLE):
        try:
            return _expand(environ[_SLURM_VARIABLE])
        except ValueError as exc:
            raise HostListError(f"${_SLURM_VARIABLE}: {exc}; set [cluster] hosts in "
                                "pipeline.cfg to use another host list") from None
    if environ.get("PBS_NODEFILE"):
        try:
            return read_pbs_nodefile(environ["PBS_NODEFILE"])
        except OSError as exc:
            raise ConfigError(f"cannot read $PBS_NODEFILE {environ['PBS_NODEFILE']}: "
                              f"{exc.strerror}; check the allocation, or set [cluster] hosts "
                              "in pipeline.cfg") from None
    return []


def _unique(hosts: object) -> list[str]:
    return list(dict.fromkeys(hosts))  # type: ignore[call-overload]

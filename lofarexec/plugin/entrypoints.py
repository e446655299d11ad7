"""The installed ``lofarexec`` entry points, found without importing :mod:`importlib.metadata`.

Every run looks for plugins, and ``importlib.metadata`` costs a run more than all of
lofarexec's own start-up work: importing it (and the ``email`` package it parses ``METADATA``
with) and reading every installed distribution's entry points through it. This module finds
the same distributions in the same order (each ``sys.path`` entry in turn, its ``*.dist-info``
and ``*.egg-info`` folders grouped by name as ``importlib.metadata``'s path finder groups them)
with ``os.listdir`` and one read of each ``entry_points.txt``; only a distribution that has a
``[lofarexec]`` section has its ``METADATA`` read, for its name and version.

Where this plain reading could differ from ``importlib.metadata`` (an importer on
``sys.meta_path`` that finds distributions itself, a zip file or an ``.egg`` on ``sys.path``),
:func:`installed_entry_points` asks ``importlib.metadata`` instead.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["EntryPoint", "installed_entry_points"]

#: importlib.metadata's ``EntryPoint.pattern``; compiled when a plugin is first loaded.
_VALUE = r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"


class EntryPoint:
    """One entry point of the ``lofarexec`` group: ``name = module[:attribute]``."""

    __slots__ = ("group", "name", "value")

    def __init__(self, name: str, value: str, group: str) -> None:
        self.name = name
        self.value = value
        self.group = group

    def load(self) -> Any:
        """Import the module and return the named object, as ``EntryPoint.load`` does."""
        match = re.match(_VALUE, self.value)
        if match is None:
            raise ValueError(f"{self.value!r} is no 'module:attribute' entry point")
        module = importlib.import_module(match.group("module"))
        attributes = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attributes, module)

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


def installed_entry_points(group: str) -> list[tuple[str, str, list[EntryPoint]]]:
    """``(name, version, entry points of group)`` of each installed distribution that has
    entry points of ``group``, in the order ``importlib.metadata.distributions()`` gives."""
    if not _plain_search_suffices():
        return _from_importlib_metadata(group)
    found = []
    for folder in _distribution_folders():
        points = _read_entry_points(os.path.join(folder, "entry_points.txt"), group)
        if points:
            name, version = _name_and_version(folder)
            found.append((name, version, points))
    return found


def _plain_search_suffices() -> bool:
    """True when only the standard path finder finds distributions, and only in folders."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return False
    for entry in sys.path:
        if entry.lower().endswith(".egg") or os.path.isfile(entry):
            return False
    return True


def _distribution_folders() -> Iterator[str]:
    """Each ``*.dist-info`` / ``*.egg-info`` folder on ``sys.path``, as importlib.metadata's
    ``Lookup`` orders them: path by path, grouped by normalized name in listing order."""
    for entry in sys.path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        groups: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = low.rpartition(".")[0].partition("-")[0]
                groups.setdefault(_normalize(name), []).append(
                    f"{entry}/{child}" if entry else child)
        for folders in groups.values():
            yield from folders


def _normalize(name: str) -> str:
    """PEP 503 normalization with underscores, as importlib.metadata's ``Prepared.normalize``
    (``re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")``) does it."""
    name = name.replace("-", "_").replace(".", "_")
    while "__" in name:
        name = name.replace("__", "_")
    return name


def _read_text(path: str) -> str | None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    try:
        chunks = []
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
    except IsADirectoryError:
        return None
    finally:
        os.close(descriptor)
    return b"".join(chunks).decode("utf-8")


def _read_entry_points(path: str, group: str) -> list[EntryPoint]:
    """The entry points of ``group`` in an ``entry_points.txt``, read as importlib.metadata
    reads it (a line that is no ``name = value`` is skipped here rather than raised)."""
    text = _read_text(path)
    if not text or f"[{group}]" not in text:
        return []
    points = []
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == group and "=" in line:
            name, value = line.split("=", 1)
            points.append(EntryPoint(name.strip(), value.strip(), group))
    return points


def _name_and_version(folder: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from the folder's ``METADATA`` (``PKG-INFO`` for egg-info):
    the first of each header, as ``email`` reads them."""
    text = _read_text(os.path.join(folder, "METADATA"))
    if text is None:
        text = _read_text(os.path.join(folder, "PKG-INFO")) or ""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers
        if line[0] in " \t" or ":" not in line:
            continue  # a continuation line: Name and Version have none
        key, value = line.split(":", 1)
        headers.setdefault(key.strip().lower(), value.lstrip(" \t").rstrip("\r\n"))
    return headers.get("name", ""), headers.get("version", "")


def _from_importlib_metadata(group: str) -> list[tuple[str, str, list[EntryPoint]]]:
    import importlib.metadata

    found = []
    for dist in importlib.metadata.distributions():
        points = [EntryPoint(point.name, point.value, group)
                  for point in dist.entry_points if point.group == group]
        if points:
            found.append((dist.metadata["Name"], dist.version, points))
    return found

"""Mapfiles: which host holds which file, in the seed's parset format.

::

    # comments and blank lines are allowed
    lce001=[ /data/L1_SB000.MS, /data/L1_SB009.MS ]
    lce002=[ /data/L1_SB001.MS,
             /data/L1_SB010.MS ]

Entries may span lines or share one; paths may contain spaces (items are split on commas and
stripped). Every malformed input raises :class:`~lofarexec.errors.DataMapError` naming the file
and line. Nothing is ever ``eval``'d.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from lofarexec.errors import DataMapError

_HOST = re.compile(r"[A-Za-z0-9_.:-]+")


def load_data_map(filename: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Read a parset mapfile; ``(host, file)`` pairs in file order."""
    name = os.fspath(filename)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataMapError(f"cannot read mapfile: {getattr(exc, 'strerror', None) or exc}",
                           filename=name) from None
    return parse_data_map(text, filename=name)


def parse_data_map(text: str, *, filename: str | None = None) -> list[tuple[str, str]]:
    """Parse mapfile text (see the module docstring); ``filename`` is for error messages."""
    pairs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    position = 0
    text = _strip_comments(text)
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            return pairs
        line = text.count("\n", 0, position) + 1
        equals = text.find("=", position)
        newline = text.find("\n", position)
        if equals < 0 or (0 <= newline < equals):
            raise DataMapError("expected 'host=[ file, ... ]', found no '='",
                               filename=filename, line=line)
        host = text[position:equals].strip()
        if not _HOST.fullmatch(host):
            raise DataMapError(f"{host!r} is not a host name", filename=filename, line=line)
        if host in seen:
            raise DataMapError(f"host {host!r} appears twice (first on line {seen[host]})",
                               filename=filename, line=line)
        seen[host] = line
        start = _skip_space(text, equals + 1)
        if not text.startswith("[", start):
            raise DataMapError(f"expected '[' after '{host}='", filename=filename, line=line)
        end = text.find("]", start)
        if end < 0:
            raise DataMapError(f"the list of host {host!r} is never closed with ']'",
                               filename=filename, line=line)
        items = [item.strip() for item in text[start + 1:end].split(",")]
        if items == [""]:
            items = []
        if "" in items:
            raise DataMapError(f"empty file name in the list of host {host!r}",
                               filename=filename, line=line)
        pairs.extend((host, item) for item in items)
        position = end + 1


def store_data_map(filename: str | os.PathLike[str], data: Iterable[tuple[str, str]]) -> None:
    """Write ``(host, file)`` pairs as a parset mapfile, hosts in order of first appearance."""
    grouped: dict[str, list[str]] = {}
    for host, path in data:
        if "," in path or "]" in path or "\n" in path:
            raise DataMapError(f"file name {path!r} cannot be written to a parset mapfile "
                               "(it contains ',', ']' or a newline)", filename=os.fspath(filename))
        grouped.setdefault(host, []).append(path)
    lines = [f"{host}=[{', '.join(paths)}]\n" for host, paths in grouped.items()]
    Path(filename).write_text("".join(lines), encoding="utf-8")


def _strip_comments(text: str) -> str:
    """Blank out ``#`` comments, keeping line breaks so line numbers stay right."""
    return re.sub(r"(?m)^[ \t]*#.*$", "", text)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position

"""Mapfiles: which host holds which file, in the seed's parset format.

::

    # comments and blank lines are allowed
    lce001=[ /data/L1_SB000.MS, /data/L1_SB009.MS ]
    lce002=[ /data/L1_SB001.MS,
             /data/L1_SB010.MS ]
    lce003=[]

Entries may share a line, and a list may go on over lines, as the original framework's
ParameterSet reader let a value go on over lines holding no ``key=``; but a line that starts an
entry (``host=``) always does, so a list left open before it is an error, never a file name
holding the next entry; nor does a file name ever go on over a line break. Paths may contain
spaces (items are split on commas and stripped), so a path cannot contain ``,`` or ``]``, nor
start or end with white space. A host may be listed with an empty list (it holds nothing).
Every malformed input raises :class:`~lofarexec.errors.DataMapError` naming the file and line.
Nothing is ever ``eval``'d. A mapfile with no file at all loads, with a warning that names it.

:func:`load_data_map` / :func:`store_data_map` are the seed's ``(host, file)`` pair interface;
:func:`load_host_lists` / :func:`parse_host_lists` keep the per-host grouping, hosts with an
empty list included.

The later framework's maps (:class:`~lofarexec.mapfiles.datamaps.DataMap`) are a list of
entries, as JSON or as a Python literal; this module reads their text (:func:`read_entries`) and
tells the formats apart (:func:`map_format`); the classes are in
:mod:`lofarexec.mapfiles.datamaps`.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from lofarexec.errors import DataMapError, DataMapSyntaxError
from lofarexec.hostnames import is_host_name

#: ``(host, [file, ...])`` in file order: the grouped form of a mapfile.
HostLists = list[tuple[str, list[str]]]

_log = logging.getLogger(__name__)


def read_map_text(filename: str | os.PathLike[str]) -> str:
    """The text of a mapfile of any format; a missing or unreadable file is a DataMapError."""
    name = os.fspath(filename)
    try:
        # newline="": a '\r' is part of a path, not a line break to translate
        with open(name, encoding="utf-8", newline="") as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataMapError(f"cannot read mapfile: {getattr(exc, 'strerror', None) or exc}",
                           filename=name) from None


def load_data_map(filename: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Read a parset mapfile; ``(host, file)`` pairs in file order."""
    name = os.fspath(filename)
    pairs = parse_data_map(read_map_text(name), filename=name)
    warn_if_empty(name, len(pairs))
    return pairs


def load_host_lists(filename: str | os.PathLike[str]) -> HostLists:
    """Read a parset mapfile keeping its grouping: ``(host, files)`` in file order."""
    name = os.fspath(filename)
    groups = parse_host_lists(read_map_text(name), filename=name)
    warn_if_empty(name, sum(len(paths) for _, paths in groups))
    return groups


def warn_if_empty(filename: str, entries: int) -> None:
    """Warn, naming the file, when a loaded map has no entries: a run of it does nothing."""
    if not entries:
        _log.warning("%s: the mapfile has no entries: nothing will run for it", filename)


def parse_data_map(text: str, *, filename: str | None = None) -> list[tuple[str, str]]:
    """Parse mapfile text (see the module docstring); ``filename`` is for error messages."""
    return [(host, path) for host, paths in parse_host_lists(text, filename=filename)
            for path in paths]


def parse_host_lists(text: str, *, filename: str | None = None) -> HostLists:
    """Parse mapfile text into ``(host, files)`` groups; a host may appear only once."""
    groups: HostLists = []
    seen: dict[str, int] = {}
    text = _strip_comments(text)
    position = _skip_space(text, 0)
    while position < len(text):
        line = text.count("\n", 0, position) + 1
        host, start = _read_host(text, position, filename, line)
        if host in seen:
            raise DataMapSyntaxError(f"host {host!r} appears twice (first on line {seen[host]})",
                               filename=filename, line=line)
        seen[host] = line
        items, position = _read_list(text, start, host, filename, line)
        groups.append((host, items))
        position = _skip_space(text, position)
    return groups


def _read_host(text: str, position: int, filename: str | None, line: int) -> tuple[str, int]:
    """The host name at ``position`` and where its ``[`` is."""
    equals = text.find("=", position)
    newline = text.find("\n", position)
    if equals < 0 or (0 <= newline < equals):
        raise DataMapSyntaxError("expected 'host=[ file, ... ]', found no '='",
                           filename=filename, line=line)
    host = text[position:equals].strip()
    if not is_host_name(host):
        raise DataMapSyntaxError(f"{host!r} is not a host name", filename=filename, line=line)
    start = _skip_space(text, equals + 1)
    if not text.startswith("[", start):
        raise DataMapSyntaxError(f"expected '[' after '{host}='", filename=filename, line=line)
    return host, start


def _read_list(
    text: str, start: int, host: str, filename: str | None, line: int
) -> tuple[list[str], int]:
    """The items of the list opening at ``start``, and the position after its ``]``.

    The list may go on over line breaks, as the original ParameterSet reader let a value go on
    over lines without ``key=`` (a trailing ``\\`` is dropped, as it did), but a line that
    starts a new entry ends nothing: the list is unclosed. A file name never holds a line break.
    """
    end = text.find("]", start)
    # same length and line breaks, so positions and line numbers stay right
    body = _BACKSLASH_NEWLINE.sub(r" \1", text[start + 1:end if end >= 0 else len(text)])
    for match in _ENTRY_START.finditer(body):
        if is_host_name(match[1]):
            next_line = line + 1 + body.count("\n", 0, match.start())
            raise DataMapSyntaxError(f"the list of host {host!r} is not closed: end it with ']' "
                               f"(line {next_line} starts the entry of host {match[1]!r})",
                               filename=filename, line=line)
    if end < 0:
        raise DataMapSyntaxError(f"the list of host {host!r} is never closed with ']'",
                           filename=filename, line=line)
    items: list[str] = []
    offset = 0
    for raw in body.split(","):
        item = raw.strip()
        if "\n" in item:
            first = item.split("\n", 1)[0].strip()
            at = line + body.count("\n", 0, offset + raw.index(item))
            raise DataMapSyntaxError(f"file name {first!r} of host {host!r} goes on over the line "
                               f"break: end line {at} with ',' or ']'",
                               filename=filename, line=at)
        items.append(item)
        offset += len(raw) + 1
    if items == [""]:
        items = []
    if "" in items:
        raise DataMapSyntaxError(f"empty file name in the list of host {host!r}",
                           filename=filename, line=line)
    return items, end + 1


#: a line inside a list that starts a new entry: ``name=`` (a host name, checked apart)
_ENTRY_START = re.compile(r"\n[ \t]*([^\s=\[\],]+)[ \t]*=")
_BACKSLASH_NEWLINE = re.compile(r"\\([ \t\r]*\n)")


def store_data_map(
    filename: str | os.PathLike[str],
    data: Iterable[tuple[str, str]] | Mapping[str, Iterable[str]],
) -> None:
    """Write a parset mapfile, replacing ``filename`` in one step (never half-written).

    ``data`` is ``(host, file)`` pairs (hosts in order of first appearance) or a mapping of
    host to files, whose hosts with no files are written with an empty list.
    """
    name = os.fspath(filename)
    if isinstance(data, Mapping):
        groups = [(host, list(paths)) for host, paths in data.items()]
    else:
        grouped: dict[str, list[str]] = {}
        for host, path in data:
            grouped.setdefault(host, []).append(path)
        groups = list(grouped.items())
    for host, paths in groups:
        _check_writable(name, host, paths)
    write_atomically(name, "".join(f"{host}=[{', '.join(paths)}]\n" for host, paths in groups))


def _check_writable(filename: str, host: str, paths: list[str]) -> None:
    """Refuse what would read back differently: the format cannot quote anything."""
    if not is_host_name(host):
        raise DataMapError(f"{host!r} is not a host name", filename=filename)
    for path in paths:
        if not isinstance(path, str):
            raise DataMapError(f"file name {path!r} of host {host!r} is a "
                               f"{type(path).__name__}, not a string", filename=filename)
        if "," in path or "]" in path or "\n" in path:
            raise DataMapError(f"file name {path!r} cannot be written to a parset mapfile "
                               "(it contains ',', ']' or a newline)", filename=filename)
        if path != path.strip() or not path:
            raise DataMapError(f"file name {path!r} cannot be written to a parset mapfile "
                               "(it is empty or starts or ends with white space)",
                               filename=filename)


def write_atomically(filename: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``filename`` and rename it into place.

    A reader (or a crash) never sees a half-written mapfile. Folders are created as needed.
    """
    path = Path(filename)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DataMapError(f"cannot write mapfile: {exc.strerror or exc}",
                           filename=os.fspath(filename)) from None


def map_format(text: str) -> Literal["parset", "datamap"]:
    """``"datamap"`` when the first thing after comments and blank lines is ``[``.

    A parset line starts with a host name, which never begins with ``[``.
    """
    stripped = _strip_comments(text).lstrip()
    return "datamap" if stripped.startswith("[") else "parset"


def read_entries(text: str, *, filename: str | None = None) -> list[tuple[Any, int]]:
    """The elements of a DataMap file's top-level list, each with the line it starts on.

    JSON or a Python literal, told apart by the first quote character (``'`` for the literal);
    when that reading fails but the other succeeds, the other is used. Nothing is ``eval``'d.
    """
    readers = [_json_entries, _literal_entries]
    first_quote = re.search("[\"']", text)
    if first_quote and first_quote[0] == "'":
        readers.reverse()
    try:
        return readers[0](text, filename)
    except DataMapError as first:
        try:
            return readers[1](text, filename)
        except DataMapError:
            raise first from None


_JSON_SPACE = " \t\n\r"
_JSON_DECODER = json.JSONDecoder()


def _json_entries(text: str, filename: str | None) -> list[tuple[Any, int]]:
    """Read a JSON list one element at a time, so each element's line is known."""
    position = _skip_json_space(text, 0)
    if not text.startswith("[", position):
        raise DataMapSyntaxError("a data map is a list: expected '['", filename=filename,
                           line=_line_of(text, position))
    opening_line = _line_of(text, position)
    position = _skip_json_space(text, position + 1)
    entries: list[tuple[Any, int]] = []
    if not text.startswith("]", position):  # not the empty list
        while True:
            value, end = _json_value(text, position, filename)
            entries.append((value, _line_of(text, position)))
            position = _skip_json_space(text, end)
            if not text.startswith(",", position):
                break
            position = _skip_json_space(text, position + 1)
    if position >= len(text):
        raise DataMapSyntaxError("the list is never closed with ']'", filename=filename,
                           line=opening_line)
    if not text.startswith("]", position):
        raise DataMapSyntaxError("expected ',' or ']' after an entry", filename=filename,
                           line=_line_of(text, position))
    _check_nothing_after(text, _skip_json_space(text, position + 1), filename)
    return entries


def _json_value(text: str, position: int, filename: str | None) -> tuple[Any, int]:
    """The JSON value starting at ``position``, and where it ends."""
    try:
        return _JSON_DECODER.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise DataMapSyntaxError(f"not valid JSON: {exc.msg}", filename=filename,
                           line=exc.lineno) from None
    except RecursionError:
        raise DataMapSyntaxError("not valid JSON: nested too deeply", filename=filename,
                           line=_line_of(text, position)) from None


def _literal_entries(text: str, filename: str | None) -> list[tuple[Any, int]]:
    """Read the framework's Python-literal list with :func:`ast.literal_eval`, element-wise."""
    body = text.lstrip()
    offset = text.count("\n", 0, len(text) - len(body))  # ast counts lines from the body
    # what ast refuses without a line: a NUL byte, a lone surrogate (only from_text has one)
    unfit = re.search("[\0\ud800-\udfff]", body)
    if unfit:
        raise DataMapSyntaxError(f"not a valid Python literal: it holds {unfit[0]!r}",
                           filename=filename, line=_line_of(text, len(text) - len(body)
                                                            + unfit.start()))
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        raise DataMapSyntaxError(f"not a valid Python literal: {exc.msg}", filename=filename,
                           line=(exc.lineno or 1) + offset) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise DataMapSyntaxError(f"not a valid Python literal: {exc}", filename=filename,
                           line=offset + 1) from None
    if not isinstance(tree.body, ast.List):
        raise DataMapSyntaxError("a data map is a list: expected '['", filename=filename,
                           line=tree.body.lineno + offset)
    entries: list[tuple[Any, int]] = []
    for element in tree.body.elts:
        try:
            value = ast.literal_eval(element)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise DataMapSyntaxError("only literals (strings, numbers, True/False/None, lists, "
                               "tuples, dicts) are allowed", filename=filename,
                               line=_first_non_literal_line(element) + offset) from None
        entries.append((value, element.lineno + offset))
    return entries


_LITERAL_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp,
                  ast.unaryop, ast.operator, ast.expr_context)


def _first_non_literal_line(element: ast.expr) -> int:
    """The line of the first node :func:`ast.literal_eval` refuses (a name, a call...)."""
    for node in ast.walk(element):
        if not isinstance(node, _LITERAL_NODES):
            return int(getattr(node, "lineno", element.lineno))
    return element.lineno


def _check_nothing_after(text: str, position: int, filename: str | None) -> None:
    if position < len(text):
        raise DataMapSyntaxError("unexpected text after the closing ']'", filename=filename,
                           line=_line_of(text, position))


def _skip_json_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _JSON_SPACE:
        position += 1
    return position


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _strip_comments(text: str) -> str:
    """Blank out ``#`` comments, keeping line breaks so line numbers stay right."""
    return re.sub(r"(?m)^[ \t]*#.*$", "", text)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position

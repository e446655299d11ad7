"""``DataMap`` and ``MultiDataMap``: mapfiles with a ``skip`` flag per entry.

The later LOFAR framework replaced the seed's parset mapfile with a list of data products, one
per line, so that a step can mark a product it could not make (``skip``) and later steps leave
it out without losing its place. Maps are written in the framework's own format, the Python
literal of the list, one entry per line, so the framework's reader (which ``eval``'s the file)
reads them too::

    [
    {'host': 'lce001', 'file': '/data/L1_SB000.MS', 'skip': False},
    {'host': 'lce002', 'file': '/data/L1_SB001.MS', 'skip': True}
    ]

Strings are written with :func:`ascii`, so any file name survives. A :class:`MultiDataMap`
entry holds a list of files on one host, each with its own skip flag (``{'host': ...,
'file': [...], 'skip': False, 'file_skip': [False, ...]}``). Maps are read with
:func:`ast.literal_eval`, never ``eval``; JSON maps (what earlier lofarexec versions wrote)
are read too, which of the two a file holds decided by its first quote character. Text that does
not parse raises :class:`~lofarexec.errors.DataMapSyntaxError` (also a ``SyntaxError``, as the
framework's reader raised), every malformed entry a :class:`~lofarexec.errors.DataMapError`,
both naming the file and the entry's line.

Entries are compared position by position across maps: the n-th entry of every map describes
the same piece of work, so :func:`validate_data_maps` checks that hosts agree in order and
:func:`align_data_maps` spreads a skip in one map to all of them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Self

from lofarexec.errors import DataMapError
from lofarexec.mapfiles.parset import (
    map_format,
    parse_data_map,
    parse_host_lists,
    read_entries,
    read_map_text,
    warn_if_empty,
    write_atomically,
)


class EntryError(ValueError):
    """One entry of a map is malformed; the caller adds where (file and line, or index)."""


@dataclasses.dataclass
class DataProduct:
    """One file on one host; ``skip`` marks a product that later steps leave out."""

    host: str
    file: str
    skip: bool = False

    def __post_init__(self) -> None:
        _check_host(self.host)
        _check_type("file", self.file, str)
        _check_type("skip", self.skip, bool)

    def __str__(self) -> str:
        return f"{self.host}:{self.file}"

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored: keys ``host``, ``file``, ``skip``."""
        return {"host": self.host, "file": self.file, "skip": self.skip}


@dataclasses.dataclass
class MultiDataProduct:
    """Several files on one host, skipped as a whole (``skip``) or one by one (``file_skip``).

    ``file_skip`` defaults to ``skip`` for every file.
    """

    host: str
    file: list[str]
    skip: bool = False
    file_skip: list[bool] | None = None

    def __post_init__(self) -> None:
        _check_host(self.host)
        _check_type("skip", self.skip, bool)
        if isinstance(self.file, str) and self.file.lstrip().startswith("["):
            self.file = _literal_file_list(self.file)  # the framework wrote the list as a str
        if not isinstance(self.file, list) or not all(isinstance(f, str) for f in self.file):
            raise EntryError(f"'file' must be a list of file names, not {self.file!r}")
        if self.file_skip is None:
            self.file_skip = [self.skip] * len(self.file)
        if not isinstance(self.file_skip, list) or not all(
                isinstance(flag, bool) for flag in self.file_skip):
            raise EntryError(f"'file_skip' must be a list of true/false, not {self.file_skip!r}")
        if len(self.file_skip) != len(self.file):
            raise EntryError(f"'file_skip' has {len(self.file_skip)} flags for "
                             f"{len(self.file)} files")

    def __str__(self) -> str:
        return f"{self.host}:{self.file}"

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored: keys ``host``, ``file``, ``skip``, ``file_skip``."""
        return {"host": self.host, "file": list(self.file), "skip": self.skip,
                "file_skip": list(self.file_skip or [])}


Product = DataProduct | MultiDataProduct


class DataMap:
    """A list of :class:`DataProduct`, in order; iterating gives every entry.

    ``iterator`` (a callable taking the entry list) changes what plain iteration yields, as the
    framework allowed: ``DataMap.TupleIterator`` gives ``(host, file)`` pairs and
    ``DataMap.SkipIterator`` the entries not skipped. :meth:`tuples` and :meth:`unskipped` do
    the same without changing the map.
    """

    product_type: ClassVar[type[Any]] = DataProduct
    _keys: ClassVar[tuple[str, ...]] = ("host", "file", "skip")

    def __init__(
        self,
        data: Iterable[Any] = (),
        iterator: Callable[[list[Any]], Iterator[Any]] | None = None,
    ) -> None:
        self._data: list[Any] = []
        self.data = data
        self.iterator = iterator

    @staticmethod
    def TupleIterator(data: Sequence[Product]) -> Iterator[tuple[str, Any]]:
        """``(host, file)`` for every entry: what the seed's ``load_data_map`` gave."""
        return ((entry.host, entry.file) for entry in data)

    @staticmethod
    def SkipIterator(data: Sequence[Product]) -> Iterator[Any]:
        """The entries whose ``skip`` is false."""
        return (entry for entry in data if not entry.skip)

    @property
    def data(self) -> list[Any]:
        """The entries; assigning validates and converts dicts and tuples into products."""
        return self._data

    @data.setter
    def data(self, items: Iterable[Any]) -> None:
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
            raise DataMapError(f"a data map is a list of entries, not {items!r}")
        converted = []
        for index, item in enumerate(items):
            try:
                converted.append(self._product(item))
            except EntryError as exc:
                raise DataMapError(f"entry {index}: {exc}") from None
        self._data = converted

    def append(self, item: Any) -> None:
        """Add an entry: a product, a dict, or a tuple ``(host, file[, skip...])``."""
        try:
            self._data.append(self._product(item))
        except EntryError as exc:
            raise DataMapError(f"cannot append {item!r}: {exc}") from None

    def tuples(self) -> Iterator[tuple[str, Any]]:
        """``(host, file)`` for every entry, in order."""
        return DataMap.TupleIterator(self._data)

    def unskipped(self) -> Iterator[Any]:
        """The entries whose ``skip`` is false, in order."""
        return DataMap.SkipIterator(self._data)

    def __iter__(self) -> Iterator[Any]:
        return (self.iterator or iter)(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> Any:
        return self._data[index]

    def __eq__(self, other: object) -> bool:
        # A DataMap never equals a MultiDataMap, even when both are empty.
        return (isinstance(other, DataMap) and type(other) is type(self)
                and self._data == other._data)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    # -- storage -------------------------------------------------------------------------------
    def to_text(self) -> str:
        """The map as the framework writes it, one entry per line (so errors can name a line)."""
        lines = [ascii(entry.to_dict()) for entry in self._data]
        return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"

    def save(self, filename: str | os.PathLike[str]) -> None:
        """Write the map (see :meth:`to_text`), replacing ``filename`` in one step."""
        write_atomically(filename, self.to_text())

    @classmethod
    def load(cls, filename: str | os.PathLike[str]) -> Self:
        """Read a map written by :meth:`save`, or by the framework (a Python literal)."""
        name = os.fspath(filename)
        new = cls.from_text(read_map_text(name), filename=name)
        warn_if_empty(name, len(new))
        return new

    @classmethod
    def from_text(cls, text: str, *, filename: str | None = None) -> Self:
        """Parse map text (JSON or Python literal); ``filename`` is for error messages."""
        return cls._from_entries(read_entries(text, filename=filename), filename)

    @classmethod
    def _from_entries(cls, entries: list[tuple[Any, int]], filename: str | None) -> Self:
        new = cls()
        for value, line in entries:
            try:
                new._data.append(new._product(value))
            except EntryError as exc:
                raise DataMapError(str(exc), filename=filename, line=line) from None
        return new

    def _product(self, item: Any) -> Any:
        """``item`` as this map's product type; EntryError says what is wrong with it."""
        kind = self.product_type
        if isinstance(item, kind):
            return item
        if isinstance(item, dict):
            unknown = sorted(set(map(str, item)) - set(self._keys))
            if unknown:
                raise EntryError(f"unknown key {unknown[0]!r} (expected {', '.join(self._keys)})")
            missing = [key for key in ("host", "file") if key not in item]
            if missing:
                raise EntryError(f"no {missing[0]!r} in entry {item!r}")
            return kind(**item)
        if isinstance(item, (tuple, list)) and 2 <= len(item) <= len(self._keys):
            return kind(*item)
        raise EntryError(f"an entry must be a {{'host': ..., 'file': ...}} object, "
                         f"not {item!r}")


class MultiDataMap(DataMap):
    """A list of :class:`MultiDataProduct`: per host, a list of files with their own skips."""

    product_type = MultiDataProduct
    _keys = ("host", "file", "skip", "file_skip")


def load_map(filename: str | os.PathLike[str]) -> DataMap:
    """Any mapfile, its format found from its content, as a :class:`DataMap`.

    A list whose entries hold file lists (or ``file_skip``) gives a :class:`MultiDataMap`; a
    parset mapfile gives a DataMap of its ``(host, file)`` pairs, none skipped. A map with no
    entries loads, with a warning naming it.
    """
    name = os.fspath(filename)
    data_map = _read_map(name, read_map_text(name))
    warn_if_empty(name, len(data_map))
    return data_map


def _read_map(name: str, text: str) -> DataMap:
    """:func:`load_map` without the warning."""
    if map_format(text) == "parset":
        return DataMap(parse_data_map(text, filename=name))
    entries = read_entries(text, filename=name)
    kind = MultiDataMap if any(_looks_multi(value) for value, _ in entries) else DataMap
    return kind._from_entries(entries, name)


@dataclasses.dataclass
class HostCount:
    """How many files a mapfile puts on one host, and how many of them are skipped."""

    host: str
    files: int = 0
    skipped: int = 0


def count_per_host(filename: str | os.PathLike[str]) -> tuple[str, list[HostCount]]:
    """The format's name and the files per host, hosts in order of first appearance.

    For ``lofarexec mapfile show``; a parset host with an empty list is counted with 0 files.
    An empty map gives no warning: the caller says so itself.
    """
    name = os.fspath(filename)
    text = read_map_text(name)
    if map_format(text) == "parset":
        groups = parse_host_lists(text, filename=name)
        return "parset mapfile", [HostCount(host, len(files)) for host, files in groups]
    data_map = _read_map(name, text)
    counts: dict[str, HostCount] = {}
    for entry in data_map:
        count = counts.setdefault(entry.host, HostCount(entry.host))
        if isinstance(entry, MultiDataProduct):
            count.files += len(entry.file)
            count.skipped += len(entry.file) if entry.skip else sum(entry.file_skip or [])
        else:
            count.files += 1
            count.skipped += entry.skip
    return type(data_map).__name__, list(counts.values())


def validate_data_maps(*maps: DataMap) -> bool:
    """True when the maps have equal length and the same host at every position.

    That is what steps reading several maps in lock-step need: the n-th product of each map
    lies on one host, so one job there can use them all. No maps at all is not valid.
    """
    if len({len(data_map) for data_map in maps}) != 1:
        return False
    return all(len({entry.host for entry in entries}) == 1 for entries in zip(*maps))


def align_data_maps(*maps: DataMap) -> None:
    """Make a skip in any map's n-th entry a skip in every map's n-th entry, in place.

    Raises DataMapError for fewer than two maps or maps that :func:`validate_data_maps` refuses.
    """
    if len(maps) < 2:
        raise DataMapError("aligning needs at least two data maps")
    if not validate_data_maps(*maps):
        lengths = ", ".join(str(len(data_map)) for data_map in maps)
        raise DataMapError(f"cannot align data maps of lengths {lengths} or whose hosts differ "
                           "at some position")
    for entries in zip(*maps):
        skip = any(entry.skip for entry in entries)
        for entry in entries:
            entry.skip = skip


def _looks_multi(value: Any) -> bool:
    return isinstance(value, dict) and ("file_skip" in value or isinstance(value.get("file"), list))


def _check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise EntryError(f"'host' must be a non-empty string, not {host!r}")


def _check_type(key: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        name = "true/false" if kind is bool else "a string"
        raise EntryError(f"{key!r} must be {name}, not {value!r}")


def _literal_file_list(text: str) -> Any:
    """The framework stored a MultiDataProduct's files as the repr of a list, in a string."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise EntryError(f"'file' is not a list of file names: {text!r}") from None

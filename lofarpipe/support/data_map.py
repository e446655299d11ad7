"""``lofarpipe.support.data_map``: the later LOFAR framework's data-map module, on lofarexec.

The classes are :mod:`lofarexec.mapfiles.datamaps`'s with the framework's defaults, so recipes
written for it behave as they did: a product built without a ``skip`` flag - ``DataProduct(host,
file)``, a ``(host, file)`` tuple or a dict without ``'skip'`` handed to ``DataMap(...)`` - is
skipped (``skip=True``), except a ``(host, file)`` tuple given to :meth:`DataMap.append`, which is
not. ``load_data_map`` reads any mapfile (parset, DataMap, MultiDataMap) into a map iterating as
``(host, file)`` pairs; ``store_data_map`` writes the DataMap format, which the framework's own
reader reads too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from lofarexec.errors import DataMapError
from lofarexec.mapfiles import datamaps
from lofarexec.mapfiles.datamaps import align_data_maps, load_map, validate_data_maps

__all__ = [
    "DataMap",
    "DataMapError",
    "DataProduct",
    "MultiDataMap",
    "MultiDataProduct",
    "align_data_maps",
    "load_data_map",
    "store_data_map",
    "validate_data_maps",
]


@dataclasses.dataclass(eq=False)
class DataProduct(datamaps.DataProduct):
    """One file on one host; skipped unless ``skip`` says otherwise (the framework's default)."""

    skip: bool = True


@dataclasses.dataclass(eq=False)
class MultiDataProduct(datamaps.MultiDataProduct):
    """Several files on one host; skipped unless ``skip`` says otherwise."""

    skip: bool = True


class DataMap(datamaps.DataMap):
    """:class:`lofarexec.mapfiles.datamaps.DataMap` with the framework's ``skip`` defaults."""

    product_type = DataProduct

    def append(self, item: Any) -> None:
        """Add an entry; a ``(host, file)`` tuple is added unskipped, as the framework did."""
        if isinstance(item, tuple) and len(item) == 2:
            item = (*item, False)
        super().append(item)

    def _product(self, item: Any) -> Any:
        # a lofarexec product (from lofarexec code, or load_map) becomes ours, flags kept
        if isinstance(item, datamaps.DataProduct | datamaps.MultiDataProduct) and not isinstance(
                item, self.product_type):
            item = item.to_dict()
        return super()._product(item)


class MultiDataMap(DataMap, datamaps.MultiDataMap):
    """:class:`lofarexec.mapfiles.datamaps.MultiDataMap` with the framework's defaults."""

    product_type = MultiDataProduct

    def append(self, item: Any) -> None:
        """Add an entry; a ``(host, files)`` tuple is added skipped, as the framework did."""
        datamaps.DataMap.append(self, item)


def as_framework_map(data_map: datamaps.DataMap) -> DataMap:
    """``data_map`` as this module's class of the same kind, every flag kept."""
    kind = MultiDataMap if isinstance(data_map, datamaps.MultiDataMap) else DataMap
    return kind(data_map.data, iterator=data_map.iterator)


def load_data_map(filename: str | os.PathLike[str]) -> DataMap:
    """Any mapfile as a DataMap whose iteration yields ``(host, file)``, for old code."""
    data_map = as_framework_map(load_map(filename))
    data_map.iterator = DataMap.TupleIterator
    return data_map


def store_data_map(
    filename: str | os.PathLike[str], data: datamaps.DataMap | Iterable[Any]
) -> None:
    """Write a DataMap, or what one can be built from (``(host, file)`` tuples)."""
    (data if isinstance(data, datamaps.DataMap) else DataMap(data)).save(filename)

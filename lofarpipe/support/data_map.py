"""``lofarpipe.support.data_map``: the later LOFAR framework's data-map module, on lofarexec.

``DataMap``/``MultiDataMap`` and their helpers come from :mod:`lofarexec.mapfiles.datamaps`. As in the
framework, ``load_data_map`` gives a DataMap that iterates as ``(host, file)`` pairs (it reads
any mapfile format) and ``store_data_map`` writes the DataMap JSON format.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from lofarexec.mapfiles.datamaps import (
    DataMap,
    DataProduct,
    MultiDataMap,
    MultiDataProduct,
    align_data_maps,
    load_map,
    validate_data_maps,
)
from lofarexec.errors import DataMapError

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


def load_data_map(filename: str | os.PathLike[str]) -> DataMap:
    """Any mapfile as a DataMap whose iteration yields ``(host, file)``, for old code."""
    data_map = load_map(filename)
    data_map.iterator = DataMap.TupleIterator
    return data_map


def store_data_map(filename: str | os.PathLike[str], data: DataMap | Iterable[Any]) -> None:
    """Write a DataMap, or what one can be built from (``(host, file)`` tuples), as JSON."""
    (data if isinstance(data, DataMap) else DataMap(data)).save(filename)

"""``lofarpipe.support.group_data``: the mapfile functions recipes import from here.

Both generations of recipes import ``load_data_map``/``store_data_map`` from this module:

- :func:`load_data_map` reads any mapfile. A seed parset mapfile (``host = [file, ...]``)
  gives the seed's list of ``(host, file)`` pairs; a DataMap or MultiDataMap file (the later
  framework's, or lofarexec's) gives the later framework's ``DataMap`` whose iteration yields
  ``(host, file)`` pairs, with ``skip`` flags and indexing by entry.
- :func:`store_data_map` writes a ``DataMap`` in the DataMap format and ``(host, file)`` pairs
  (or a host-to-files mapping) as the seed's parset mapfile.

``validate_data_maps`` is the later framework's; ``tally_data_map`` and ``gvds_iterator`` need
LOFAR's own Python bindings and raise ``LofarBindingsMissing`` when called.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from lofarexec.mapfiles import datamaps, parset
from lofarpipe.support.data_map import as_framework_map, validate_data_maps
from lofarpipe.support.lofarexceptions import missing_bindings

__all__ = ["gvds_iterator", "load_data_map", "store_data_map", "tally_data_map",
           "validate_data_maps"]


def load_data_map(filename: str | os.PathLike[str]) -> Any:
    """A parset mapfile's ``(host, file)`` pairs, or a DataMap file's map iterating as pairs."""
    name = os.fspath(filename)
    if parset.map_format(parset.read_map_text(name)) == "parset":
        return parset.load_data_map(name)
    data_map = as_framework_map(datamaps.load_map(name))
    data_map.iterator = datamaps.DataMap.TupleIterator
    return data_map


def store_data_map(filename: str | os.PathLike[str],
                   data: datamaps.DataMap | Iterable[tuple[str, str]]
                   | Mapping[str, Iterable[str]]) -> None:
    """Write a ``DataMap`` as such, anything else as the seed's parset mapfile."""
    if isinstance(data, datamaps.DataMap):
        data.save(filename)
    else:
        parset.store_data_map(filename, data)


def tally_data_map(*args: Any, **kwargs: Any) -> Any:
    """Needs ``lofar.mstools``: raises ``LofarBindingsMissing``."""
    raise missing_bindings("lofarpipe.support.group_data.tally_data_map", "lofar.mstools")


def gvds_iterator(*args: Any, **kwargs: Any) -> Any:
    """Needs ``lofar.parameterset``: raises ``LofarBindingsMissing``."""
    raise missing_bindings("lofarpipe.support.group_data.gvds_iterator", "lofar.parameterset")

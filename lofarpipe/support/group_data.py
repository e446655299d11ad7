"""``from lofarpipe.support.group_data import load_data_map`` (the seed's mapfile reader)."""

from lofarexec.mapfiles.parset import load_data_map, store_data_map

__all__ = ["load_data_map", "store_data_map"]

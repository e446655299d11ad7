"""``lofarpipe.support.data_map`` / ``group_data``: data maps as the later framework had them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lofarexec.errors import DataMapError
from lofarexec.mapfiles import datamaps
from lofarpipe.support import group_data
from lofarpipe.support.data_map import (
    DataMap,
    DataProduct,
    MultiDataMap,
    MultiDataProduct,
    align_data_maps,
    load_data_map,
    store_data_map,
)

PAIRS = [("locus001", "/d/SB101.MS"), ("locus002", "/d/SB102.MS")]


def test_entries_without_a_skip_flag_get_the_frameworks_default():
    assert [entry.skip for entry in DataMap(PAIRS)] == [True, True]
    assert DataMap([{"host": "a", "file": "/x"}])[0].skip is True
    assert DataProduct("a", "/x").skip is True
    assert MultiDataMap([("a", ["/x", "/y"])])[0].file_skip == [True, True]
    data_map = DataMap()
    data_map.append(("a", "/x"))  # appended pairs are not skipped, as in the framework
    data_map.append(("b", "/y", True))
    assert [entry.skip for entry in data_map] == [False, True]
    multi = MultiDataMap()
    multi.append(("a", ["/x"]))
    assert multi[0].skip is True and isinstance(multi[0], MultiDataProduct)
    assert isinstance(multi, datamaps.MultiDataMap)  # lofarexec code takes it as its own
    # lofarexec's products (default not skipped) keep their flags in a framework map
    assert DataMap([datamaps.DataProduct("a", "/x")])[0].skip is False


@pytest.mark.parametrize("kind", [DataMap, MultiDataMap, datamaps.DataMap])
@pytest.mark.parametrize("data", [42, None, "foo", {"host": "a", "file": "/x"}, [1, 2],
                                  ("foo", "bar"), [{"host": "a", "file": "/x", "slip": True}]])
def test_what_is_no_map_is_a_data_map_error(kind, data):
    with pytest.raises(DataMapError):
        kind(data)


@pytest.mark.parametrize("text, line", [("[{'host': 'locus001']", 1),
                                        ('[\n{"host": "a", "file": "/x"},\n{"host": }\n]', 3),
                                        ("a=[/x]\nb=[/y\nc=[/z]\n", 2)])
def test_a_map_that_does_not_parse_is_also_a_syntax_error(tmp_path, text, line):
    path = tmp_path / "bad.map"
    path.write_text(text)
    for read in (DataMap.load, MultiDataMap.load, load_data_map, group_data.load_data_map,
                 datamaps.load_map):
        if read in (DataMap.load, MultiDataMap.load) and text.startswith("a="):
            continue  # these read the DataMap format only
        with pytest.raises(SyntaxError) as caught:
            read(path)
        assert isinstance(caught.value, DataMapError)
        assert str(caught.value).startswith(f"{path}:{line}: ")
        assert "\n" not in str(caught.value)


def test_written_maps_are_what_the_frameworks_reader_evaluates(tmp_path):
    odd = "/d/it's \"odd\" é\\x\n.MS"
    DataMap([("a", "/x", False), ("b", odd)]).save(tmp_path / "d.map")
    MultiDataMap([("a", ["/x", odd], False, [False, True])]).save(tmp_path / "m.map")
    # the framework read a map with eval(): plain Python literals, no JSON true/false
    assert eval((tmp_path / "d.map").read_text(), {"__builtins__": {}}) == [
        {"host": "a", "file": "/x", "skip": False}, {"host": "b", "file": odd, "skip": True}]
    assert eval((tmp_path / "m.map").read_text(), {"__builtins__": {}}) == [
        {"host": "a", "file": ["/x", odd], "skip": False, "file_skip": [False, True]}]
    assert (tmp_path / "d.map").read_text().isascii()
    assert DataMap.load(tmp_path / "d.map") == DataMap([("a", "/x", False), ("b", odd)])


def test_load_and_store_data_map_of_the_later_framework(tmp_path):
    store_data_map(tmp_path / "m", PAIRS)
    loaded = load_data_map(tmp_path / "m")
    assert loaded == DataMap(PAIRS) and loaded.iterator is DataMap.TupleIterator
    assert list(loaded) == PAIRS and loaded[0].skip is True
    parset = tmp_path / "p.map"
    parset.write_text("locus001=[/d/SB101.MS]\nlocus002=[/d/SB102.MS]\n")
    assert list(load_data_map(parset)) == PAIRS
    assert [entry.skip for entry in load_data_map(parset).data] == [False, False]


def test_group_data_reads_both_generations_of_map(tmp_path):
    seed = tmp_path / "seed.map"
    group_data.store_data_map(seed, PAIRS)  # the seed's recipes write parset mapfiles
    assert seed.read_text() == "locus001=[/d/SB101.MS]\nlocus002=[/d/SB102.MS]\n"
    assert group_data.load_data_map(seed) == PAIRS  # and read back the seed's list of pairs
    later = tmp_path / "later.map"
    group_data.store_data_map(later, DataMap([("locus001", "/d/SB101.MS", False),
                                              ("locus002", "/d/SB102.MS", True)]))
    assert ast.literal_eval(later.read_text())[1]["skip"] is True
    loaded = group_data.load_data_map(later)
    assert list(loaded) == PAIRS and [e.skip for e in loaded.data] == [False, True]
    assert isinstance(loaded, DataMap)
    multi = tmp_path / "multi.map"
    multi.write_text(repr([{"host": "a", "file": "['/x', '/y']", "skip": False,
                            "file_skip": [False, True]}]))  # as the framework wrote them
    assert list(group_data.load_data_map(multi)) == [("a", ["/x", "/y"])]
    assert group_data.validate_data_maps(DataMap(PAIRS), DataMap(PAIRS))
    align_data_maps(first := DataMap(PAIRS), DataMap([(h, f, False) for h, f in PAIRS]))
    assert all(entry.skip for entry in first)


def test_a_missing_map_names_the_file(tmp_path: Path):
    with pytest.raises(DataMapError, match=rf"^{tmp_path}/nope: cannot read mapfile"):
        group_data.load_data_map(tmp_path / "nope")

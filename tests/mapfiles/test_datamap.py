"""Mapfiles: the seed's parset format, DataMap/MultiDataMap, and ``lofarexec mapfile``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lofarexec.errors import DataMapError
from lofarexec.mapfiles.datamaps import (
    DataMap,
    DataProduct,
    MultiDataMap,
    MultiDataProduct,
    align_data_maps,
    count_per_host,
    load_map,
    validate_data_maps,
)
from lofarexec.mapfiles.parset import (
    load_data_map,
    load_host_lists,
    map_format,
    store_data_map,
)
from tests.helpers import REPO

SEED_EXAMPLE = """\
# a processing run on CEP
lce001=[ /data/L1/SB000.MS, /data/L1/SB009.MS ] lce002=[ /data/L1/SB001.MS ]

lce003=[ /data/L1/SB002.MS,
         /data/my data/SB011.MS ]
lce004=[]
"""


def write(tmp_path: Path, text: str, name: str = "test.map") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the parset format -------------------------------------------------------------------------
def test_reads_the_seed_format_in_file_order(tmp_path):
    assert load_data_map(write(tmp_path, SEED_EXAMPLE)) == [
        ("lce001", "/data/L1/SB000.MS"), ("lce001", "/data/L1/SB009.MS"),
        ("lce002", "/data/L1/SB001.MS"), ("lce003", "/data/L1/SB002.MS"),
        ("lce003", "/data/my data/SB011.MS"),
    ]


def test_host_lists_keep_hosts_with_nothing(tmp_path):
    groups = load_host_lists(write(tmp_path, SEED_EXAMPLE))
    assert [host for host, _ in groups] == ["lce001", "lce002", "lce003", "lce004"]
    assert groups[-1] == ("lce004", [])


@pytest.mark.parametrize(("text", "line", "what"), [
    ("a=[/x]\nb=[/y,\n/z\n", 2, "the list of host 'b' is never closed with ']'"),
    ("a=[/x]\n# comment\na=[/y]\n", 3, "host 'a' appears twice (first on line 1)"),
    ("a=[/x]\n\n/data/y.MS\n", 3, "expected 'host=[ file, ... ]', found no '='"),
    ("a=/x\n", 1, "expected '[' after 'a='"),
    ("a=[/x]\nmy host=[/y]\n", 2, "'my host' is not a host name"),
    ("a=[/x]\nb=[/y,,/z]\n", 2, "empty file name in the list of host 'b'"),
    ("a=[/x] junk\n", 1, "expected 'host=[ file, ... ]', found no '='"),
])
def test_malformed_parset_names_file_line_and_what(tmp_path, text, line, what):
    path = write(tmp_path, text)
    with pytest.raises(DataMapError) as caught:
        load_data_map(path)
    assert str(caught.value) == f"{path}:{line}: {what}"
    assert (caught.value.filename, caught.value.line) == (str(path), line)


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing.map",
    lambda tmp: tmp,  # a folder
    lambda tmp: (tmp / "latin1.map", (tmp / "latin1.map").write_bytes(b"a=[/caf\xe9]"))[0],
])
def test_unreadable_file_is_a_data_map_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(DataMapError, match=r"^.+: cannot read mapfile: ") as caught:
        load_data_map(path)
    assert caught.value.filename == str(path)
    with pytest.raises(DataMapError, match="cannot read mapfile"):
        load_map(path)


@pytest.mark.parametrize(("data", "what"), [
    ([("a", "/x,y")], "contains ',', ']' or a newline"),
    ([("a", "/x]")], "contains ',', ']' or a newline"),
    ([("a", " /x")], "starts or ends with white space"),
    ([("a b", "/x")], "'a b' is not a host name"),
    ({"a": [3]}, "is a int, not a string"),
])
def test_store_refuses_what_would_not_read_back(tmp_path, data, what):
    target = tmp_path / "out.map"
    with pytest.raises(DataMapError, match=what):
        store_data_map(target, data)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_store_replaces_the_file_and_keeps_empty_hosts(tmp_path):
    target = write(tmp_path, "old=[/old]\n", "out.map")
    store_data_map(target, {"node1": ["/a", "/b c"], "node2": []})
    assert target.read_text() == "node1=[/a, /b c]\nnode2=[]\n"
    assert load_host_lists(target) == [("node1", ["/a", "/b c"]), ("node2", [])]
    assert [p.name for p in tmp_path.iterdir()] == ["out.map"]


def test_the_seed_import_path_still_works(tmp_path):
    from lofarpipe.support.group_data import load_data_map as seed_load
    from lofarpipe.support.group_data import store_data_map as seed_store

    seed_store(tmp_path / "m", [("h1", "/x"), ("h2", "/y"), ("h1", "/z")])
    assert seed_load(tmp_path / "m") == [("h1", "/x"), ("h1", "/z"), ("h2", "/y")]


hosts = st.text("abcXYZ019_.:-", min_size=1, max_size=12).filter(lambda h: h[0] != "-")
parset_paths = st.text(st.characters(blacklist_characters=",]\n", blacklist_categories=["Cs"]),
                       min_size=1, max_size=20).map(str.strip).filter(bool)


@settings(database=None, deadline=None)
@given(st.dictionaries(hosts, st.lists(parset_paths, max_size=4), max_size=6))
def test_parset_round_trip(tmp_path_factory, groups):
    target = tmp_path_factory.getbasetemp() / "round.map"
    store_data_map(target, groups)
    assert load_host_lists(target) == list(groups.items())
    assert load_data_map(target) == [(h, p) for h, paths in groups.items() for p in paths]


# -- DataMap and MultiDataMap ------------------------------------------------------------------
FRAMEWORK_MAP = """\
[{'host': 'lce001', 'file': '/data/L1_SB000.MS', 'skip': False},
 {'host': 'lce002', 'file': "/data/it's.MS", 'skip': True}]
"""
FRAMEWORK_MULTI = """\
[{'host': 'lce001',  'skip': False, 'file': "['/a.MS', '/b.MS']", 'file_skip' : [False, True]}]
"""


def test_reads_the_framework_literal_format(tmp_path):
    data_map = DataMap.load(write(tmp_path, FRAMEWORK_MAP))
    assert list(data_map) == [DataProduct("lce001", "/data/L1_SB000.MS", False),
                              DataProduct("lce002", "/data/it's.MS", True)]
    multi = MultiDataMap.load(write(tmp_path, FRAMEWORK_MULTI))
    assert multi[0] == MultiDataProduct("lce001", ["/a.MS", "/b.MS"], False, [False, True])


def test_maps_are_written_as_the_framework_literal_one_entry_per_line(tmp_path):
    data_map = DataMap([("lce001", "/x.MS"), {"host": "lce002", "file": "/y.MS", "skip": True}])
    data_map.save(tmp_path / "m.map")
    lines = (tmp_path / "m.map").read_text().splitlines()
    assert lines[1] == "{'host': 'lce001', 'file': '/x.MS', 'skip': False},"
    assert DataMap.load(tmp_path / "m.map") == data_map
    assert load_map(tmp_path / "m.map") == data_map
    json_map = write(tmp_path, '[{"host": "lce001", "file": "/x.MS", "skip": false}]', "j.json")
    assert DataMap.load(json_map) == DataMap(data_map[:1])  # what earlier versions wrote


def test_the_literal_format_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"[\n{{'host': 'a', 'file': __import__('os').mkdir({str(marker)!r})}}]")
    with pytest.raises(DataMapError, match=rf"^{path}:2: only literals"):
        DataMap.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(("text", "line", "what"), [
    ('[\n{"host": "a", "file": "/x"},\n{"host": "b", "file": "/y", "skip": "no"}\n]', 3,
     "'skip' must be true/false, not 'no'"),
    ('[\n{"host": "a", "file": "/x", "size": 3}\n]', 2, "unknown key 'size'"),
    ('[\n{"host": "a"}\n]', 2, "no 'file' in entry"),
    ('[\n{"host": 7, "file": "/x"}\n]', 2, "'host' must be a non-empty string, not 7"),
    ('[\n"lce001:/x"\n]', 2, "an entry must be a {'host': ..., 'file': ...} object"),
    ('[\n{"host": "a", "file": "/x"},\n{"host": "b", "file": "/y"}\n', 1,
     "the list is never closed with ']'"),
    ('[\n{"host": "a", "file": "/x"}\n{"host": "b", "file": "/y"}\n]', 3, "expected ',' or ']'"),
    ('[\n{"host": "a", "file": "/x"}\n]\n]\n', 4, "unexpected text after the closing ']'"),
    ('[\n{"host": "a",\n "file" "/x"}\n]', 3, "not valid JSON: Expecting ':' delimiter"),
    ("[\n{'host': 'a', 'file': '/x'},\n{'host': 'b' 'file': '/y'}\n]", 3,
     "not a valid Python literal"),
    ("[\n{'host': 'a', 'file': '/x', 'skip': None}\n]", 2, "'skip' must be true/false"),
    ("[\n{'host': 'a', 'file': '/x'},\n{'host': 'b', 'file': '/\0'}]", 3,
     r"not a valid Python literal: it holds '\x00'"),
])
def test_malformed_data_map_names_file_line_and_what(tmp_path, text, line, what):
    path = write(tmp_path, text)
    with pytest.raises(DataMapError) as caught:
        DataMap.load(path)
    assert str(caught.value).startswith(f"{path}:{line}: {what}"), str(caught.value)


@pytest.mark.parametrize("text", ["[]", " [ \n ]\n", "# old\n[\n]"])
def test_empty_data_maps(tmp_path, text):
    assert len(DataMap.load(write(tmp_path, text))) == 0


def test_a_data_map_must_be_a_list():
    with pytest.raises(DataMapError, match=r"^line 1: a data map is a list: expected '\['"):
        DataMap.from_text('{"host": "a", "file": "/x"}')


def test_multi_entries_are_checked(tmp_path):
    path = write(tmp_path, '[\n{"host": "a", "file": ["/x", "/y"], "file_skip": [true]}\n]')
    with pytest.raises(DataMapError, match=rf"^{path}:2: 'file_skip' has 1 flags for 2 files"):
        MultiDataMap.load(path)
    with pytest.raises(DataMapError, match="'file' must be a list of file names"):
        MultiDataMap([("a", "/not-a-list")])
    assert MultiDataMap([("a", ["/x"], True)])[0].file_skip == [True]


def test_iterators_over_entries_pairs_and_unskipped():
    data_map = DataMap([("a", "/1", False), ("b", "/2", True), ("a", "/3", False)])
    assert [entry.file for entry in data_map] == ["/1", "/2", "/3"]
    assert list(data_map.tuples()) == [("a", "/1"), ("b", "/2"), ("a", "/3")]
    assert [entry.file for entry in data_map.unskipped()] == ["/1", "/3"]
    data_map.iterator = DataMap.SkipIterator  # the framework's way
    assert len(list(data_map)) == 2
    data_map.iterator = DataMap.TupleIterator
    assert next(iter(data_map)) == ("a", "/1")
    assert len(data_map) == 3 and str(data_map[1]) == "b:/2"


def test_append_and_types():
    data_map = DataMap()
    data_map.append(("a", "/x"))
    data_map.append({"host": "b", "file": "/y", "skip": True})
    data_map.append(DataProduct("c", "/z"))
    assert [entry.skip for entry in data_map] == [False, True, False]
    with pytest.raises(DataMapError, match="cannot append"):
        data_map.append(("a", "/x", "yes"))
    with pytest.raises(DataMapError, match=r"^entry 1: 'file' must be a string"):
        DataMap([("a", "/x"), ("b", None)])
    assert DataMap() != MultiDataMap()


def test_validate_and_align():
    first = DataMap([("a", "/1"), ("b", "/2", True), ("c", "/3")])
    second = DataMap([("a", "/1.out", True), ("b", "/2.out"), ("c", "/3.out")])
    assert validate_data_maps(first, second)
    assert not validate_data_maps(first, DataMap([("a", "/1"), ("b", "/2")]))
    assert not validate_data_maps(first, DataMap([("a", "/1"), ("c", "/2"), ("b", "/3")]))
    align_data_maps(first, second)
    assert [e.skip for e in first] == [e.skip for e in second] == [True, True, False]
    with pytest.raises(DataMapError, match="at least two"):
        align_data_maps(first)
    with pytest.raises(DataMapError, match="lengths 3, 2"):
        align_data_maps(first, DataMap([("a", "/1"), ("b", "/2")]))


def test_format_detection_and_the_later_framework_import_path(tmp_path):
    from lofarpipe.support import data_map as framework

    assert map_format("# comment\n  [") == "datamap"
    assert map_format("a=[/x]") == map_format("") == "parset"
    parset = write(tmp_path, "a=[/x, /y]\n")
    assert list(framework.load_data_map(parset)) == [("a", "/x"), ("a", "/y")]
    framework.store_data_map(tmp_path / "new.map", [("a", "/x")])
    assert ast.literal_eval((tmp_path / "new.map").read_text()) == [
        {"host": "a", "file": "/x", "skip": True}]  # the framework's default for a tuple
    multi = write(tmp_path, '[{"host": "a", "file": ["/x"]}]', "multi.json")
    assert isinstance(load_map(multi), MultiDataMap)
    assert count_per_host(multi)[0] == "MultiDataMap"


any_text = st.text(st.characters(), max_size=15)


@settings(database=None, deadline=None)
@given(st.lists(st.tuples(any_text.filter(bool), any_text, st.booleans()), max_size=6))
def test_json_data_map_round_trip(tmp_path_factory, entries):
    target = tmp_path_factory.getbasetemp() / "round.json"
    DataMap(entries).save(target)
    assert list(DataMap.load(target).tuples()) == [(host, path) for host, path, _ in entries]
    assert DataMap.load(target) == DataMap(entries)


@settings(database=None, deadline=None)
@given(st.lists(st.tuples(any_text.filter(bool), st.lists(any_text, max_size=3), st.booleans()),
                max_size=4))
def test_json_multi_data_map_round_trip(tmp_path_factory, entries):
    target = tmp_path_factory.getbasetemp() / "round-multi.json"
    MultiDataMap(entries).save(target)
    assert MultiDataMap.load(target) == MultiDataMap(entries)


# -- lofarexec mapfile -------------------------------------------------------------------------
def lofarexec(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lofarexec.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO,
                          timeout=30)


def test_cli_show_prints_hosts_counts_and_totals(tmp_path):
    result = lofarexec("mapfile", "show", write(tmp_path, SEED_EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": parset mapfile")
    assert lines[1].split() == ["host", "files"]
    assert [line.split() for line in lines[2:6]] == [
        ["lce001", "2"], ["lce002", "1"], ["lce003", "2"], ["lce004", "0"]]
    assert lines[6].split() == ["total", "5", "(4", "hosts)"]


def test_cli_show_reads_data_maps_with_their_skips(tmp_path):
    result = lofarexec("mapfile", "show", write(tmp_path, FRAMEWORK_MAP))
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [
        ["host", "files", "skipped"], ["lce001", "1", "0"], ["lce002", "1", "1"],
        ["total", "2", "1", "(2", "hosts)"]]


def test_cli_validate_says_what_is_wrong_in_one_line_per_file(tmp_path):
    good = write(tmp_path, SEED_EXAMPLE, "good.map")
    bad = write(tmp_path, "a=[/x]\nb=[/y\n", "bad.map")
    bad_json = write(tmp_path, '[\n{"host": "a", "file": 1}\n]', "bad.json")
    result = lofarexec("mapfile", "validate", good, bad, bad_json, tmp_path / "none.map")
    assert result.returncode == 1
    assert result.stdout == f"{good}: valid parset mapfile, 4 hosts, 5 files\n"
    assert result.stderr.splitlines() == [
        f"{bad}:2: the list of host 'b' is never closed with ']'",
        f"{bad_json}:2: 'file' must be a string, not 1",
        f"{tmp_path / 'none.map'}: cannot read mapfile: No such file or directory",
    ]
    assert lofarexec("mapfile", "validate", good).returncode == 0


def test_cli_show_of_a_bad_file_is_one_line_without_traceback(tmp_path):
    bad = write(tmp_path, "[\n{'host': 'a', 'file': '/x', 'skip': 'no'}\n]")
    result = lofarexec("mapfile", "show", bad)
    assert result.returncode == 1
    assert result.stderr == f"lofarexec: {bad}:2: 'skip' must be true/false, not 'no'\n"
    assert lofarexec("backends").returncode == 0

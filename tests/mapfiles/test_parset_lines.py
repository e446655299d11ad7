"""Parset mapfiles: a list never swallows the next entry, and an empty mapfile is said (issue 12).

The original framework read these files with LOFAR's ParameterSet: a line holding ``key=``
starts a new key, other lines continue the previous value. So a list may go on over lines that
do not start an entry, but a line like ``lce003=[ /e ]`` always starts one, and a file name is
never cut by a line break.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from lofarexec.errors import DataMapError
from lofarexec.mapfiles.datamaps import DataMap, MultiDataMap, count_per_host, load_map
from lofarexec.mapfiles.parset import load_data_map, load_host_lists, parse_host_lists
from tests.helpers import REPO

LOGGER = "lofarexec.mapfiles"


def write(tmp_path: Path, text: str, name: str = "test.map") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lofarexec(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lofarexec.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=30)


@pytest.mark.parametrize(("text", "line", "what"), [
    # the file: it loaded a file named "/d \nlce003=[ /e" and lost host lce003
    ("lce001=[ /a, /b ]\nlce002=[ /c, /d \nlce003=[ /e ]\n", 2,
     "the list of host 'lce002' is not closed: end it with ']' (line 3 starts the entry "
     "of host 'lce003')"),
    # a trailing comma does not make the next entry a file name either
    ("lce002=[ /c, /d,\nlce003=[ /e ]\n", 1,
     "the list of host 'lce002' is not closed: end it with ']' (line 2 starts the entry "
     "of host 'lce003')"),
    ("lce002=[ /c,\n  /d\nlce003 = []\n", 1,
     "the list of host 'lce002' is not closed: end it with ']' (line 3 starts the entry "
     "of host 'lce003')"),
    # a file name never goes on over a line break
    ("lce002=[ /c, /d\n/e ]\n", 1,
     "file name '/d' of host 'lce002' goes on over the line break: end line 1 with ',' "
     "or ']'"),
])
def test_an_unclosed_list_is_an_error_naming_file_line_and_what_to_write(
    tmp_path, text, line, what
):
    path = write(tmp_path, text)
    with pytest.raises(DataMapError) as caught:
        load_data_map(path)
    assert str(caught.value) == f"{path}:{line}: {what}"
    assert (caught.value.filename, caught.value.line) == (str(path), line)


@pytest.mark.parametrize(("text", "groups"), [
    ("a=[ /x,\n     /y ]\nb=[]\n", [("a", ["/x", "/y"]), ("b", [])]),
    ("a=[\n  /x,\n  /y\n]\n", [("a", ["/x", "/y"])]),
    ("a=[ /x\n  , /y ]\n", [("a", ["/x", "/y"])]),
    ("a=[ /x,\n# the second disk\n  /y ]\n", [("a", ["/x", "/y"])]),
    # ParameterSet's trailing backslash: the line goes on (kept for old files)
    ("a=[ /x, \\\n  /y ]\nb=[/z]\n", [("a", ["/x", "/y"]), ("b", ["/z"])]),
    ("a=[/x] b=[/y,\n /z] c=[]\n", [("a", ["/x"]), ("b", ["/y", "/z"]), ("c", [])]),
    ("a=[/data/k=v.MS, /d/x]\n", [("a", ["/data/k=v.MS", "/d/x"])]),
    ("a=[/x]\r\nb=[/y,\r\n /z]\r\n", [("a", ["/x"]), ("b", ["/y", "/z"])]),
])
def test_lists_over_several_lines_still_load(text, groups):
    assert parse_host_lists(text) == groups


def test_validate_refuses_the_unclosed_list(tmp_path):
    path = write(tmp_path, "lce002=[ /c, /d \nlce003=[ /e ]\n")
    result = lofarexec("mapfile", "validate", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"{path}:1: the list of host 'lce002' is not closed: end it with "
                             "']' (line 2 starts the entry of host 'lce003')\n")


# -- empty mapfiles ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "# nothing to do today\n"])
def test_an_empty_parset_mapfile_loads_with_a_warning(tmp_path, caplog, text):
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_data_map(path) == []
        assert load_host_lists(path) == []
        assert len(load_map(path)) == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert {r.getMessage() for r in warnings} == {
        f"{path}: the mapfile has no entries: nothing will run for it"}
    assert {r.name for r in warnings} <= {"lofarexec.mapfiles.parset",
                                          "lofarexec.mapfiles.datamaps"}


@pytest.mark.parametrize("text", ["[]", "# old\n[\n]\n"])
def test_an_empty_data_map_loads_with_a_warning(tmp_path, caplog, text):
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert len(DataMap.load(path)) == 0
        assert len(MultiDataMap.load(path)) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: the mapfile has no entries: nothing will run for it"] * 2


def test_a_map_with_entries_or_hosts_does_not_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_data_map(write(tmp_path, "a=[/x]\n"))
        DataMap.load(write(tmp_path, '[{"host": "a", "file": "/x"}]', "m.json"))
        count_per_host(write(tmp_path, "", "empty.map"))  # says it itself, see the CLI
    assert caplog.records == []


def test_validate_says_an_empty_map_has_no_entries_and_stays_valid(tmp_path):
    empty = write(tmp_path, "# nothing\n", "empty.map")
    hosts_only = write(tmp_path, "a=[]\nb=[]\n", "hosts.map")
    empty_json = write(tmp_path, "[]\n", "empty.json")
    result = lofarexec("mapfile", "validate", empty, hosts_only, empty_json)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{empty}: valid parset mapfile, but EMPTY: 0 entries (no job will run for it)",
        f"{hosts_only}: valid parset mapfile, 2 hosts, but EMPTY: 0 files "
        "(no job will run for it)",
        f"{empty_json}: valid DataMap, but EMPTY: 0 entries (no job will run for it)",
    ]
    assert result.stderr == ""

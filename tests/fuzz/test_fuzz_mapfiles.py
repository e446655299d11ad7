"""Fuzzing the mapfile readers: parset mapfiles, and JSON or Python-literal DataMap files.

A parset mapfile is checked against :func:`reference_host_lists`, a reading written apart from
the module's scanner (one regular expression per entry, the documented rules applied to what it
matched); a DataMap file against the map built from the same Python values without any text
(``DataMap(values)``). Text that is neither must raise DataMapError naming the file and a line
inside the file, never another exception.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from lofarexec.errors import DataMapError
from lofarexec.hostnames import is_host_name
from lofarexec.mapfiles.datamaps import DataMap, MultiDataMap, load_map
from lofarexec.mapfiles.parset import HostLists, load_data_map, parse_host_lists
from tests.fuzz import FUZZ

NAME = "fuzz.map"


# -- the reference reading of a parset mapfile ---------------------------------------------------
_COMMENT = re.compile(r"(?m)^[ \t]*#.*$")  # a whole-line comment (the documented rule)
_ENTRY = re.compile(r"\s*([^=\n]*)=\s*\[([^\]]*)\]")
_NEW_ENTRY = re.compile(r"[ \t]*([^\s=\[\],]+)[ \t]*=")


def reference_host_lists(text: str) -> HostLists | None:
    """The mapfile's ``(host, files)`` groups, or None when the rules refuse it."""
    text = _COMMENT.sub("", text)
    groups: HostLists = []
    position = 0
    while text[position:].strip():
        match = _ENTRY.match(text, position)
        if match is None:
            return None
        host, body = match[1].strip(), re.sub(r"\\([ \t\r]*\n)", r" \1", match[2])
        if not is_host_name(host) or host in dict(groups):
            return None
        for later_line in body.split("\n")[1:]:  # a line of the list that starts an entry
            start = _NEW_ENTRY.match(later_line)
            if start and is_host_name(start[1]):
                return None
        files = [item.strip() for item in body.split(",")]
        files = [] if files == [""] else files
        if any(not name or "\n" in name for name in files):
            return None
        groups.append((host, files))
        position = match.end()
    return groups


def parse_or_error(text: str) -> HostLists | DataMapError:
    try:
        return parse_host_lists(text, filename=NAME)
    except DataMapError as exc:
        return exc


def check_error(error: DataMapError, text: str, filename: str = NAME) -> None:
    """Our error, naming the file and a line that the text has."""
    assert error.filename == filename, error
    assert error.line is not None or "cannot read mapfile" in str(error), error
    assert error.line is None or 1 <= error.line <= text.count("\n") + 1, error
    assert str(error).startswith(filename)
    assert "\n" not in str(error), "one line"


# -- strategies --------------------------------------------------------------------------------
hosts = st.text(string.ascii_letters + string.digits + "_.:@%-", min_size=1, max_size=8).filter(
    is_host_name)


def _fits_a_list(path: str) -> bool:
    """A file name a parset mapfile can hold anywhere in a list (also first on a line)."""
    start = _NEW_ENTRY.match(path)
    return not path.startswith("#") and not (start and is_host_name(start[1]))


paths = (st.text(st.characters(blacklist_characters=",]\n", blacklist_categories=["Cs"]),
                 min_size=1, max_size=12)
         .map(str.strip).filter(bool).filter(_fits_a_list))
groups_strategy = st.dictionaries(hosts, st.lists(paths, max_size=4), max_size=5)


@st.composite
def rendered(draw: st.DrawFn, groups: dict[str, list[str]]) -> str:
    """``groups`` written in one of the many layouts people (and the original tools) used."""
    parts = []
    for host, files in groups.items():
        comma = draw(st.sampled_from([",", ", ", " , ", ",\n    ", ", \\\n  ", ",\n# a note\n"]))
        opening = draw(st.sampled_from(["[", "[ ", "[\n  "]))
        closing = draw(st.sampled_from(["]", " ]", "\n]", " \\\n]"]))
        equals = draw(st.sampled_from(["=", " = ", "=\t"]))
        parts.append(f"{host}{equals}{opening}{comma.join(files)}{closing}")
        parts.append(draw(st.sampled_from(["\n", " ", "\r\n", "\n\n# next\n", "\t"])))
    return draw(st.sampled_from(["", "# a header\n", "\n"])) + "".join(parts)


PARSET_PIECES = ["lce001", "a", "my host", "-x", "=", "[", "]", ",", " ", "\n", "\r", "\t", "#",
                 "\\", "/d=1", "lce003=[", "\u2028", "\x85", "\x00"]


@st.composite
def mutated(draw: st.DrawFn, texts: st.SearchStrategy[str], pieces: list[str]) -> str:
    """A text from ``texts`` with a few edits (a piece put in, a stretch cut out): nearly
    valid input, where a reader's rules are tested hardest."""
    text = draw(texts)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(pieces) | st.text(max_size=2)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 3)):]
    return text


#: Mapfiles with a few edits: most are nearly a mapfile, some still are one.
parset_like = mutated(groups_strategy.flatmap(rendered), PARSET_PIECES)


# -- parset mapfiles ---------------------------------------------------------------------------
@FUZZ
@given(st.data(), groups_strategy)
def test_parset_layouts_read_back_as_written(data, groups):
    text = data.draw(rendered(groups))
    assert reference_host_lists(text) == list(groups.items())
    assert parse_or_error(text) == list(groups.items())


@FUZZ
@given(parset_like)
@example(text="lce002=[ /c, /d \nlce003=[ /e ]\n")  # issue 12: swallowed lce003
@example(text="lce002=[ /c, /d,\nlce003=[ /e ]\n")
def test_parset_like_text_reads_as_the_reference_or_is_our_error(text):
    ours, reference = parse_or_error(text), reference_host_lists(text)
    if isinstance(ours, DataMapError):
        check_error(ours, text)
        assert reference is None, f"refused {text!r} ({ours}), reference read {reference}"
    else:
        assert ours == reference


@FUZZ
@given(st.text(max_size=60))
def test_any_text_reads_as_the_reference_or_is_our_error(text):
    ours = parse_or_error(text)
    if isinstance(ours, DataMapError):
        check_error(ours, text)
        assert reference_host_lists(text) is None
    else:
        assert ours == reference_host_lists(text)


@FUZZ
@given(st.binary(max_size=60))
def test_any_file_loads_or_is_our_error(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "bytes.map"
    path.write_bytes(raw)
    for load in (load_data_map, load_map):
        try:
            load(path)
        except DataMapError as exc:
            assert exc.filename == str(path)
            assert exc.line is not None or "cannot read mapfile" in str(exc), exc


# -- DataMap and MultiDataMap files ------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6)
           | st.floats(allow_nan=False, allow_infinity=False))
file_lists = st.lists(st.text(max_size=6), max_size=3)
good_entries = (st.fixed_dictionaries({"host": hosts, "file": st.text(max_size=8)},
                                      optional={"skip": st.booleans()})
                | st.fixed_dictionaries({"host": hosts, "file": file_lists},
                                        optional={"skip": st.booleans(),
                                                  "file_skip": st.lists(st.booleans(),
                                                                        max_size=3)})
                | st.tuples(hosts, st.text(max_size=8), st.booleans()))
odd_entries = (st.fixed_dictionaries(
    {}, optional={"host": hosts | scalars, "file": file_lists | scalars,
                  "skip": st.booleans() | scalars, "file_skip": st.lists(st.booleans()) | scalars,
                  "size": scalars})
    | st.tuples(hosts, st.text(max_size=8)) | scalars)
#: Lists of entries, mostly well formed (both kinds of map, and their mix).
entries = st.lists(good_entries, max_size=4) | st.lists(good_entries | odd_entries, max_size=4)


def built_or_error(kind: type[DataMap], values: list[object]) -> DataMap | None:
    """The reference: the map made from the values themselves, None when it refuses them."""
    try:
        return kind(values)
    except DataMapError:
        return None


def read_or_error(kind: type[DataMap], text: str) -> DataMap | DataMapError:
    try:
        return kind.from_text(text, filename=NAME)
    except DataMapError as exc:
        return exc


@FUZZ
@given(entries, st.sampled_from(["json", "json-lines", "literal"]))
def test_data_map_text_reads_as_the_values_it_was_written_from(values, how):
    text = _written(values, how)
    if how != "literal":
        values = json.loads(text)  # JSON has no tuples: the reference reads what JSON holds
    for kind in (DataMap, MultiDataMap):
        ours, reference = read_or_error(kind, text), built_or_error(kind, values)
        if isinstance(ours, DataMapError):
            check_error(ours, text)
            assert reference is None, f"{kind.__name__} refused {text!r}: {ours}"
        else:
            assert ours == reference


DATA_MAP_PIECES = ["[", "]", "{", "}", ",", ":", "'host'", '"file"', '"skip"', "true", "False",
                   "None", "null", "NaN", "1e999", "9" * 30, " ", "\n", '"/x"', "(", ")",
                   "__import__('os')", "#", "\x00", "\\", '"', "'", "'''", "[" * 50, "\ud800"]


def _written(values: list[object], how: str) -> str:
    """``values`` as a data map file: JSON, JSON one entry a line, or the framework's literal."""
    if how == "json":
        return json.dumps(values)
    if how == "json-lines":
        return "[\n" + ",\n".join(json.dumps(value) for value in values) + "\n]\n"
    return repr(values)


#: Data map files with a few edits: most are nearly a data map, some still are one.
data_map_like = mutated(
    st.builds(_written, entries, st.sampled_from(["json", "json-lines", "literal"])),
    DATA_MAP_PIECES)


@FUZZ
@given(data_map_like | st.text(max_size=40))
@example(text="[\n'\x00']")  # was named line 1
@example(text="[\n'\ud800']")  # was named no line
def test_any_data_map_text_is_a_map_or_our_error(text):
    for kind in (DataMap, MultiDataMap):
        ours = read_or_error(kind, text)
        if isinstance(ours, DataMapError):
            check_error(ours, text)
        else:
            assert all(isinstance(entry, kind.product_type) for entry in ours)


@FUZZ
@given(data_map_like)
def test_any_map_file_loads_in_the_format_it_looks_like_or_is_our_error(tmp_path_factory, text):
    path: Path = tmp_path_factory.getbasetemp() / "any.map"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: not UTF-8
    try:
        loaded = load_map(path)
    except DataMapError as exc:
        check_error(exc, text, str(path))
    else:
        assert isinstance(loaded, DataMap)

"""The plain entry-point search finds what importlib.metadata finds, in the same order
(issue 17: a run no longer imports importlib.metadata to find its plugins)."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from lofarexec.plugin import entrypoints
from lofarexec.plugin.entrypoints import EntryPoint, installed_entry_points


def by_importlib(group: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    found = []
    for dist in importlib.metadata.distributions():
        points = [(p.name, p.value) for p in dist.entry_points if p.group == group]
        if points:
            found.append((dist.metadata["Name"], dist.version, points))
    return found


def plain(group: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(name, version, [(p.name, p.value) for p in points])
            for name, version, points in installed_entry_points(group)]


def write_dist(site: Path, folder: str, metadata: str, entry_points: str | None) -> None:
    (site / folder).mkdir()
    (site / folder / ("PKG-INFO" if folder.endswith(".egg-info") else "METADATA")).write_text(
        metadata)
    if entry_points is not None:
        (site / folder / "entry_points.txt").write_text(entry_points)


def test_the_installed_lofarexec_entry_points_are_importlib_metadata_s():
    assert entrypoints._plain_search_suffices()  # else this compares importlib with itself
    found = plain("lofarexec")
    assert found == by_importlib("lofarexec")
    assert any(name == "lofarexec" and ("local", "lofarexec_local") in points
               for name, _, points in found)


def test_odd_files_are_read_as_importlib_metadata_reads_them(site: Path):
    write_dist(site, "Odd.Name-2.0.dist-info",
               "Metadata-Version: 2.1\nname:   Odd.Name\nSummary: x\n  continued\nVersion: 2.0\n"
               "Version: 9\n\nName: body\n",
               "# a comment\n[console_scripts]\nodd = odd:main\n\n[lofarexec]\n"
               "  first = odd_plugin:register.hook [extra]\nsecond=odd_two\n[other]\nx = y\n")
    write_dist(site, "odd_name-1.0.dist-info", "Name: odd-name\nVersion: 1.0\n",
               "[lofarexec]\nfirst = shadowed\n")
    write_dist(site, "legacy-0.5.egg-info", "Metadata-Version: 1.0\nName: legacy\nVersion: 0.5\n",
               "[lofarexec]\nlegacy = legacy_mod\n")
    write_dist(site, "silent-1.0.dist-info", "Name: silent\nVersion: 1.0\n", None)
    write_dist(site, "spaced-1.0.dist-info", "Name: spaced\nVersion: 1.0\n",
               "[ lofarexec ]\nnot_ours = x\n")
    found = plain("lofarexec")
    assert found == by_importlib("lofarexec")
    ours = [entry for entry in found if entry[0] in ("Odd.Name", "odd-name", "legacy")]
    assert sorted(ours) == [
        ("Odd.Name", "2.0", [("first", "odd_plugin:register.hook [extra]"),
                             ("second", "odd_two")]),
        ("legacy", "0.5", [("legacy", "legacy_mod")]),
        ("odd-name", "1.0", [("first", "shadowed")]),
    ]


def test_entry_point_load_follows_module_and_attribute_path(site: Path):
    (site / "ep_target.py").write_text("class Outer:\n    class Inner:\n        value = 7\n")
    assert EntryPoint("x", "ep_target:Outer.Inner", "lofarexec").load().value == 7
    assert EntryPoint("x", "ep_target", "lofarexec").load() is sys.modules["ep_target"]
    with pytest.raises(ModuleNotFoundError):
        EntryPoint("x", "no_such_module_here", "lofarexec").load()


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"")
    monkeypatch.syspath_prepend(str(archive))
    assert not entrypoints._plain_search_suffices()
    assert plain("lofarexec") == by_importlib("lofarexec")


def test_an_importer_that_finds_distributions_is_left_to_importlib_metadata(
        monkeypatch: pytest.MonkeyPatch):
    class Finder:
        @staticmethod
        def find_spec(*args: object) -> None:
            return None

        @staticmethod
        def find_distributions(*args: object) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert not entrypoints._plain_search_suffices()
    assert plain("lofarexec") == by_importlib("lofarexec")

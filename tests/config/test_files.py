"""Tests of lofarexec.config.files: where pipeline.cfg is found, and its parse errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofarexec.config import find_config, load_config
from lofarexec.errors import ConfigError
from tests.config.support import check_error, load, write

# ---------------------------------------------------------------------------- find_config


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("recipe", "work", "home", "other")}
    for folder in folders.values():
        folder.mkdir()
    return folders


def find(places: dict[str, Path], explicit: str | Path | None = None) -> Path:
    return find_config(
        explicit,
        recipe_directory=places["recipe"],
        working_directory=places["work"],
        home=places["home"],
    )


def test_find_explicit_file_wins_over_every_other_place(places: dict[str, Path]) -> None:
    chosen = write(places["other"], "[DEFAULT]\n", "mine.cfg")
    write(places["recipe"], "[DEFAULT]\n")
    write(places["work"], "[DEFAULT]\n")
    assert find(places, str(chosen)) == chosen


def test_find_explicit_missing_is_an_error_without_fallback(places: dict[str, Path]) -> None:
    write(places["recipe"], "[DEFAULT]\n")
    missing = places["other"] / "nope.cfg"
    with pytest.raises(ConfigError) as excinfo:
        find(places, missing)
    check_error(excinfo, missing, None, None, "-c", "does not exist")


def test_find_explicit_directory_is_an_error(places: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        find(places, places["other"])
    check_error(excinfo, places["other"], None, None, "is a directory")


def test_find_recipe_folder_before_working_directory_and_home(places: dict[str, Path]) -> None:
    expected = write(places["recipe"], "[DEFAULT]\n")
    write(places["work"], "[DEFAULT]\n")
    write(places["home"], "[DEFAULT]\n", ".pipeline.cfg")
    assert find(places) == expected


def test_find_working_directory_before_home(places: dict[str, Path]) -> None:
    expected = write(places["work"], "[DEFAULT]\n")
    write(places["home"], "[DEFAULT]\n", ".pipeline.cfg")
    assert find(places) == expected


def test_find_home_dot_file_last(places: dict[str, Path]) -> None:
    write(places["home"], "[DEFAULT]\n", "pipeline.cfg")  # the wrong name in home: ignored
    expected = write(places["home"], "[DEFAULT]\n", ".pipeline.cfg")
    assert find(places) == expected


def test_find_home_defaults_to_the_users_home(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(places["home"]))
    expected = write(places["home"], "[DEFAULT]\n", ".pipeline.cfg")
    found = find_config(None, recipe_directory=None, working_directory=places["work"])
    assert found == expected


def test_find_nothing_lists_every_place_and_suggests_c(places: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        find(places)
    message = check_error(excinfo, None, None, None, "-c FILE")
    for expected in (
        places["recipe"] / "pipeline.cfg",
        places["work"] / "pipeline.cfg",
        places["home"] / ".pipeline.cfg",
    ):
        assert str(expected) in message


# ---------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("text", "section", "key", "fragments"),
    [
        ("[a]\nx = 1\n[a]\ny = 2\n", "a", None, ("line 3", "twice")),
        ("[a]\nx = 1\ny = 2\nX = 3\n", "a", "x", ("line 4", "twice")),
        ("x = 1\n[a]\n", None, None, ("line 1", "'x = 1'", "header")),
        ("[a]\nx = 1\nno delimiter here\n", None, None, ("line 3: 'no delimiter here';",)),
    ],
    ids=["duplicate-section", "duplicate-key", "no-header", "bad-line"],
)
def test_parse_errors_name_the_line(
    tmp_path: Path, text: str, section: str | None, key: str | None, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t")
    check_error(excinfo, path, section, key, *fragments)


def test_a_repeated_default_header_is_legal(tmp_path: Path) -> None:
    config = load(tmp_path, "[DEFAULT]\na = 1\n[x]\n[DEFAULT]\nb = 2\n")
    assert (config.get("x", "a"), config.get("x", "b")) == ("1", "2")
    assert config.section_keys("DEFAULT") == ["a", "b"]


def test_directory_instead_of_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path, job_name="j", start_time="t")
    check_error(excinfo, tmp_path, None, None, "cannot be read")


def test_broken_symlink_is_unreadable(tmp_path: Path) -> None:
    link = tmp_path / "pipeline.cfg"
    link.symlink_to(tmp_path / "gone.cfg")
    with pytest.raises(ConfigError) as excinfo:
        load_config(link, job_name="j", start_time="t")
    check_error(excinfo, link, None, None, "cannot be read")


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.cfg"
    path.write_bytes(b"[a]\nx = \xff\xfe\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, job_name="j", start_time="t")
    check_error(excinfo, path, None, None, "UTF-8")

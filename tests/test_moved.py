"""Old module paths (0.1) still import, as the very module at its new place, with a warning."""

from __future__ import annotations

import importlib
import sys

import pytest

from lofarexec._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_path_is_the_new_module_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_a_name_from_an_old_path() -> None:
    sys.modules.pop("lofarexec.datamap", None)
    with pytest.warns(DeprecationWarning):
        from lofarexec.datamap import load_data_map
    from lofarexec.mapfiles.parset import load_data_map as moved
    assert load_data_map is moved


def test_other_missing_modules_are_still_missing() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lofarexec.no_such_module")

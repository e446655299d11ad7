"""The architecture's import rules hold: the import-linter contracts in pyproject.toml.

The core's layers, node scripts on the standard library, programs for hosts never imported,
backends built only on ``lofarexec``, ``lofarexec.backend``, ``lofarexec.errors`` and the
toolkit ``lofarexec.transport``, and no backend importing another.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import REPO


def test_the_import_contracts_are_kept() -> None:
    # installed beside this Python by `pip install -e .[test]`, which may not be on PATH
    program = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([program, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contracts_cover_every_subpackage() -> None:
    """A new subpackage must be placed in a layer, or the layers contract says nothing of it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(contract["layers"] for contract in config["contracts"]
                  if contract["type"] == "layers")
    placed = {name.strip() for layer in layers for name in layer.split(":")}
    package = REPO / "lofarexec"
    present = {f"lofarexec.{path.parent.name}" for path in package.glob("*/__init__.py")}
    present |= {f"lofarexec.{path.stem}" for path in package.glob("*.py")
                if not path.stem.startswith("_")}
    assert present - {"lofarexec.hostprograms"} <= placed, present - placed

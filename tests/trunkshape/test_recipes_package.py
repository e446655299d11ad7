"""The later framework's recipes live in ``lofarpipe.recipes.master``/``.nodes`` (its unit tests
import them from there): a folder of the user's own on the path must join our ``lofarpipe``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import REPO


def test_a_lofarpipe_recipes_folder_on_the_path_joins_our_lofarpipe(tmp_path: Path) -> None:
    master = tmp_path / "lofarpipe" / "recipes" / "master"
    master.mkdir(parents=True)
    (master / "shaped.py").write_text(textwrap.dedent("""\
        from lofarpipe.support.baserecipe import BaseRecipe
        from lofarpipe.support.data_map import DataMap

        class shaped(BaseRecipe):
            pass
    """))
    # our checkout first, as a plain (non-editable) install puts lofarpipe on the path
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}")
    probe = ("import lofarpipe.recipes.master.shaped as m, lofarpipe.support.data_map as d;"
             "print(m.__file__); print(d.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    recipe_file, support_file = done.stdout.split()
    assert recipe_file == str(master / "shaped.py")
    assert support_file == str(REPO / "lofarpipe" / "support" / "data_map.py")

"""Sphinx configuration for the lofarexec documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` (Sphinx is not a dependency
of lofarexec: ``pip install sphinx`` first).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The package and the built-in backends, importable without installing them (for autodoc).
sys.path[:0] = [str(ROOT), str(ROOT / "backends")]

project = "lofarexec"
author = "the lofarexec authors"
copyright = "the lofarexec authors; GPL-3.0-or-later"
release = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "lofarexec" / "__init__.py").read_text(), re.M
).group(1)
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

root_doc = "index"
exclude_patterns = ["_build"]
highlight_language = "none"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

html_theme = "alabaster"
html_title = f"lofarexec {release}"

"""``lofarexec run RECIPE``: find a recipe by name in ``[DEFAULT] recipe_directories``, or by path.

As the original LOFAR framework looked recipes up, a name ``foo`` is searched in each
``recipe_directories`` folder in order, first as ``<folder>/master/foo.py`` (the framework's
layout, beside ``nodes/``) and then as ``<folder>/foo.py``; the first file found wins. A
``RECIPE`` that names an existing file (or holds a ``/`` or ends in ``.py``) is taken as a
path. The ``pipeline.cfg`` read for the folders is the recipe's own: its ``-c``/``--config``
option when given, else ``pipeline.cfg`` in the working directory, else ``~/.pipeline.cfg``.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lofarexec.config import find_config, load_config
from lofarexec.errors import ConfigError, LofarexecError

__all__ = ["RecipeNotFound", "config_option", "find_recipe", "recipe_argv"]


class RecipeNotFound(LofarexecError):
    """No recipe of that name in the configured folders; the message lists where it looked."""


def config_option(arguments: Sequence[str]) -> str | None:
    """The value of the recipe's ``-c``/``--config`` option in ``arguments``, if any."""
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        if argument in ("-c", "--config") and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith("--config="):
            return argument.split("=", 1)[1]
        if argument.startswith("-c") and len(argument) > 2 and not argument.startswith("--"):
            return argument[2:]
    return None


def _looks_like_path(recipe: str) -> bool:
    return os.sep in recipe or recipe.endswith(".py") or os.path.isfile(recipe)


def find_recipe(recipe: str, arguments: Sequence[str], *, cwd: str | None = None) -> Path:
    """The recipe file ``recipe`` names: a path as given, else a name looked up in
    ``[DEFAULT] recipe_directories`` of the recipe's ``pipeline.cfg`` (see the module)."""
    if _looks_like_path(recipe):
        path = Path(recipe).expanduser()
        if not path.is_file():
            raise RecipeNotFound(f"recipe {recipe}: no such file")
        return path
    working = cwd or os.getcwd()
    try:
        config_path = find_config(config_option(arguments), recipe_directory=None,
                                  working_directory=working)
    except ConfigError as exc:
        raise RecipeNotFound(f"recipe {recipe!r} is not a file, and to look it up by name: "
                             f"{exc}") from None
    now = datetime.datetime.now().isoformat(timespec="seconds")
    config = load_config(config_path, job_name="run", start_time=now, cwd=working)
    folders = config.recipe_directories
    candidates = [candidate for folder in folders
                  for candidate in (folder / "master" / f"{recipe}.py", folder / f"{recipe}.py")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not folders:
        raise RecipeNotFound(f"no recipe {recipe!r}: {config_path} sets no [DEFAULT] "
                             "recipe_directories to look in; set it, or give the recipe's path")
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise RecipeNotFound(f"no recipe {recipe!r} (looked for {looked}; [DEFAULT] "
                         f"recipe_directories in {config_path})")


def recipe_argv(path: Path, arguments: Sequence[str]) -> list[str]:
    """The command ``python recipe.py ARGUMENTS`` with this interpreter."""
    return [sys.executable, str(path), *arguments]

"""``lofarexec run RECIPE ARGS``: found by name in ``[DEFAULT] recipe_directories`` (``master/``
first, then the folder itself, folders in order) or by path, and run as ``python RECIPE ARGS``
would: the same argv, the same exit status. Real processes throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, write_config

# Prints its own argv as JSON, exits with the status given as its last argument.
ECHO_RECIPE = """\
import json, sys
print(json.dumps(sys.argv))
sys.exit(int(sys.argv[-1]))
"""


def lofarexec(*argv: str, cwd: Path, home: Path | None = None
              ) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run([sys.executable, "-m", "lofarexec.cli", *argv], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=120)


def recipe_folders(tmp_path: Path, *folders: str) -> Path:
    """A pipeline.cfg whose recipe_directories are ``folders`` under ``tmp_path``."""
    listed = ", ".join(str(tmp_path / folder) for folder in folders)
    return write_config(tmp_path, f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                        f"recipe_directories = [{listed}]\n")


def put(path: Path, text: str = ECHO_RECIPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_by_name_from_master_with_the_same_argv_and_exit_status(tmp_path):
    recipe = put(tmp_path / "one" / "master" / "echo.py")
    config = recipe_folders(tmp_path, "one")
    done = lofarexec("run", "echo", "-c", str(config), "-j", "x", "--odd", "7", cwd=tmp_path)
    assert done.returncode == 7, done.stderr
    assert json.loads(done.stdout) == [str(recipe), "-c", str(config), "-j", "x", "--odd", "7"]
    assert done.stderr == ""


def test_by_name_folders_in_order_master_before_the_folder_itself(tmp_path):
    put(tmp_path / "one" / "echo.py", "raise SystemExit(11)\n")
    put(tmp_path / "one" / "master" / "echo.py", "raise SystemExit(12)\n")
    put(tmp_path / "two" / "master" / "echo.py", "raise SystemExit(13)\n")
    put(tmp_path / "two" / "plain.py", "raise SystemExit(14)\n")
    config = recipe_folders(tmp_path, "one", "two")
    assert lofarexec("run", "echo", "-c", str(config), cwd=tmp_path).returncode == 12
    assert lofarexec("run", "plain", f"--config={config}", cwd=tmp_path).returncode == 14


def test_the_config_in_the_working_directory_is_found(tmp_path):
    put(tmp_path / "one" / "master" / "echo.py")
    recipe_folders(tmp_path, "one")  # tmp_path/pipeline.cfg
    assert lofarexec("run", "echo", "-j", "x", "0", cwd=tmp_path).returncode == 0


def test_by_path(tmp_path):
    recipe = put(tmp_path / "elsewhere" / "echo.py")
    done = lofarexec("run", str(recipe), "a b", "3", cwd=tmp_path)
    assert done.returncode == 3
    assert json.loads(done.stdout) == [str(recipe), "a b", "3"]


def test_the_recipes_own_help_is_shown(tmp_path):
    done = lofarexec("run", str(REPO / "recipes" / "master" / "example_parallel.py"), "--help",
                     cwd=tmp_path)
    assert done.returncode == 0
    assert "--job-name" in done.stdout


def test_an_unknown_name_is_one_line_saying_where_it_looked(tmp_path):
    config = recipe_folders(tmp_path, "one", "two")
    done = lofarexec("run", "nosuch", "-c", str(config), "-j", "x", cwd=tmp_path)
    assert done.returncode == 1
    looked = ", ".join(str(tmp_path / folder / sub) for folder in ("one", "two")
                       for sub in ("master/nosuch.py", "nosuch.py"))
    assert done.stderr.splitlines() == [
        f"lofarexec: no recipe 'nosuch' (looked for {looked}; [DEFAULT] recipe_directories "
        f"in {config})"]


def test_no_recipe_directories_and_no_config_are_one_line_each(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    config = write_config(bare)
    done = lofarexec("run", "nosuch", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "sets no [DEFAULT] recipe_directories" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = lofarexec("run", "nosuch", cwd=empty, home=empty)  # no ~/.pipeline.cfg either
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("lofarexec: recipe 'nosuch' is not a file, and to look it up")


def test_a_missing_path_is_one_line(tmp_path):
    done = lofarexec("run", str(tmp_path / "gone.py"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"lofarexec: recipe {tmp_path / 'gone.py'}: no such file\n"


def test_a_shipped_recipe_runs_by_name(tmp_path):
    config = write_config(tmp_path, f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                          f"recipe_directories = [{REPO / 'recipes'}]\n")
    done = lofarexec("run", "example_parallel", "-j", "byname", "-d", "-c", str(config),
                     "localhost", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Received example_argument as argument" in done.stderr
    assert "recipe example_parallel completed" in done.stderr

"""The out-of-tree example backend (examples/lofarexec-unshare), installed with pip as CI does.

``bash scripts/test`` pip-installs it; these tests run a shipped recipe with ``[remote] method =
unshare`` (lofarexec itself knows nothing of it), run the package's own test suite as its
author would, and hold it to the imports a backend may use.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, write_config

EXAMPLE = REPO / "examples" / "lofarexec-unshare"
ALLOWED_IMPORTS = {"lofarexec", "lofarexec.backend", "lofarexec.errors", "lofarexec.transport"}


def require_installed_example() -> None:
    """Skip (fail under CI) when the example package is not pip-installed here."""
    try:
        dist = importlib.metadata.distribution("lofarexec-unshare")
    except importlib.metadata.PackageNotFoundError:
        problem = "lofarexec-unshare is not installed: run `bash scripts/test`, which installs it"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    points = [ep for ep in dist.entry_points if ep.group == "lofarexec"]
    assert [(ep.name, ep.value) for ep in points] == [("unshare", "lofarexec_unshare")]


def test_the_example_imports_only_what_a_backend_may():
    used = set()
    for path in (EXAMPLE / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(alias.name for alias in node.names)
    ours = {name for name in used if name.split(".")[0] == "lofarexec"}
    assert ours and ours <= ALLOWED_IMPORTS, ours - ALLOWED_IMPORTS
    assert not {name for name in used if name.startswith("lofarexec_")}


@pytest.mark.slow
def test_a_recipe_runs_with_the_example_backend(tmp_path):
    require_installed_example()
    config = write_config(tmp_path, "[unshare]\nnamespaces = pid, mount, uts\n",
                          method="unshare")
    recipe = REPO / "recipes" / "master" / "example_parallel.py"
    result = subprocess.run([sys.executable, str(recipe), "-j", "u", "-c", str(config),
                             "nodeA"], text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "runtime" / "jobs" / "u" / "journal.jsonl"
    ended = [event for event in map(json.loads, journal.read_text().splitlines())
             if event["event"] == "ended"]
    assert [(e["host"], e["backend"], e["state"], e["returncode"]) for e in ended] == [
        ("nodeA", "unshare", "succeeded", 0)]


@pytest.mark.slow
def test_the_example_packages_own_tests_pass():
    """As its author runs them: from its folder, with its own pytest settings (which enable
    lofarexec's pytest plugin with one ``-p`` option)."""
    require_installed_example()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=EXAMPLE, text=True, capture_output=True, timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout

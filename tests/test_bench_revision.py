"""The benchmarks' ``lofarexec revision:`` line names the code measured, not the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def revision_seen(tmp_path: Path, pythonpath: Path | None) -> str:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _common; "
            "print(_common.revision())")
    return subprocess.run([sys.executable, "-c", code, str(ROOT / "bench")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_another_tree_on_pythonpath_is_named_and_not_taken_for_this_checkout(tmp_path):
    other = tmp_path / "base"
    (other / "lofarexec").mkdir(parents=True)
    (other / "lofarexec" / "__init__.py").write_text("")
    assert revision_seen(tmp_path, other) == f"the tree at {other.resolve()} (not a git checkout)"


def test_this_checkout_is_named_by_its_commit(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("an archive of the project: there is no commit to name")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    seen = revision_seen(tmp_path, ROOT)
    assert seen.split()[0] == head and "the tree at" not in seen

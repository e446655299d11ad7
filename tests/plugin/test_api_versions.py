"""The versioned plugin API: every hook and toolkit name is documented with ``versionadded``
and used by a test, so nothing enters the stable surface untested or unannounced.

The policy itself is in docs/plugins.rst, "Versions and compatibility"; tests/test_docs.py keeps
``__all__`` and docs/api.rst listing the same names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lofarexec.transport
from lofarexec.plugin import spec

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
THIS_FILE = Path(__file__).resolve()

HOOKS = sorted(name for name, value in vars(spec).items()
               if name.startswith("lofarexec_") and callable(value))
TOOLKIT = sorted(lofarexec.transport.__all__)


def _api_entry(name: str) -> str | None:
    """The block of docs/api.rst documenting ``lofarexec.transport.<name>``: its directive and
    the indented lines under it."""
    text = (DOCS / "api.rst").read_text()
    found = re.search(rf"^\.\. auto\w+:: lofarexec\.transport\.{name}\s*\n((?:[ \t]+.*\n|\n)*)",
                      text, re.MULTILINE)
    return found.group(0) if found else None


def _test_sources() -> str:
    return "\n".join(path.read_text() for path in sorted((REPO / "tests").rglob("*.py"))
                     if path.resolve() != THIS_FILE)


@pytest.mark.parametrize("name", TOOLKIT)
def test_every_toolkit_name_is_documented_since_a_version(name):
    entry = _api_entry(name)
    assert entry is not None, f"docs/api.rst has no entry for lofarexec.transport.{name}"
    assert re.search(r"^   \.\. versionadded:: \d+\.\d+", entry, re.MULTILINE), (
        f"add '.. versionadded:: X.Y' under lofarexec.transport.{name} in docs/api.rst")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_says_since_when_in_its_docstring(hook):
    assert re.search(r"\.\. versionadded:: \d+\.\d+", getattr(spec, hook).__doc__ or ""), hook


def test_every_hook_and_toolkit_name_is_used_by_a_test():
    sources = _test_sources()
    untested = [name for name in HOOKS + TOOLKIT
                if not re.search(rf"\b{re.escape(name)}\b", sources)]
    assert untested == [], f"no test under tests/ uses {untested}: write one"


def test_the_compatibility_policy_is_written_down():
    text = (DOCS / "plugins.rst").read_text()
    policy = text.split(".. _plugin-api-versions:", 1)[1]
    assert "Additive within a major version" in policy
    assert "Deprecations warn for one minor release" in policy

"""``lofarexec backends -v``: each backend's package, version and settings; the docs' settings
reference is the same data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lofarexec.cli import main
from lofarexec.plugin.manager import build_plugin_manager
from lofarexec.plugin.metadata import describe_backends, render_rst
from tests.plugin.dists import good_backend, install

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "backends" / "settings.rst"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "site"
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(folder)):
            del sys.modules[name]


def test_verbose_listing_shows_package_version_and_settings(site, capsys):
    install(site, "lofarexec-answer", "4.2", "plugin_answer", good_backend("answer"))
    assert main(["backends", "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = out.index(next(line for line in out if line.startswith("answer ")))
    assert "lofarexec-answer 4.2" in out[row]
    assert "Ends every job at once with [answer] answer." in out[row]
    assert out[row + 1:row + 3] == [
        "    answer (int, default: 42): what every job returns",
        "    label (str, default: (empty)): a word for the logs",
    ]
    assert "    kill_grace (float, default: 1.0): seconds between SIGTERM and SIGKILL for the " \
           "node when a job is killed (0 to 3600)" in out


def test_plain_listing_has_no_settings(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and not any(line.startswith(" ") for line in out)
    assert any(line.startswith("local ") and "lofarexec " in line for line in out)


def test_the_docs_settings_reference_is_generated_from_the_same_data():
    registry = build_plugin_manager().backends
    own = [name for name in registry.names() if registry.provider(name).split()[0] == "lofarexec"]
    assert REFERENCE.read_text() == render_rst(describe_backends(registry, own)), (
        "docs/backends/settings.rst is out of date: regenerate it with "
        "`lofarexec backends --format rst > docs/backends/settings.rst`")


def test_every_setting_of_every_built_in_backend_has_help_text():
    registry = build_plugin_manager().backends
    for info in describe_backends(registry):
        if info.package == "lofarexec":
            assert [s.name for s in info.settings if not s.help] == [], info.name

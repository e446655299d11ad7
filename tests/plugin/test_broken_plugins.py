"""A broken plugin is left out, described in one line naming its package; the rest work.

Each case installs real throwaway distributions (a ``.dist-info`` and a module on ``sys.path``)
and builds the plugin manager as a run does.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from lofarexec.errors import PluginError
from lofarexec.plugin.manager import build_plugin_manager
from tests.plugin.dists import good_backend, install

HOOK_RAISES = '''\
from lofarexec import hookimpl

@hookimpl
def lofarexec_register_backends(registry):
    raise RuntimeError("cannot find libcondor")
'''

NOT_A_BACKEND = '''\
from lofarexec import hookimpl

class Condor:
    name = "condor"

@hookimpl
def lofarexec_register_backends(registry):
    registry.add(Condor)
'''

BAD_SETTINGS_TYPE = '''\
import dataclasses
from lofarexec import Backend, hookimpl

@dataclasses.dataclass(frozen=True)
class Settings:
    limits: dict = dataclasses.field(default_factory=dict)

class Pbs(Backend):
    """Has a settings field no pipeline.cfg value can fill."""
    name = "pbs"
    Settings = Settings

    def start(self, request, report):
        raise AssertionError("never started")

@hookimpl
def lofarexec_register_backends(registry):
    registry.add(Pbs)
'''


def only_line(broken: list[str]) -> str:
    assert len(broken) == 1, broken
    assert "\n" not in broken[0]
    return broken[0]


def assert_others_work(manager) -> None:
    assert manager.backends.provider("local").split()[0] == "lofarexec"
    assert manager.backends.get("mock").name == "mock"


def test_import_error_is_one_line_and_the_others_load(site):
    install(site, "lofarexec-htcondor", "0.3", "plugin_importfails",
            "raise ImportError('needs htcondor bindings')\n")
    install(site, "lofarexec-fine", "1.0", "plugin_fine_a", good_backend("fine_a"))
    manager = build_plugin_manager(warn_broken=False)
    line = only_line(manager.broken)
    assert "lofarexec-htcondor 0.3" in line and "needs htcondor bindings" in line
    assert "uninstall lofarexec-htcondor" in line
    assert_others_work(manager)
    assert manager.backends.provider("fine_a") == "lofarexec-fine 1.0"


def test_hook_raising_is_one_line(site):
    install(site, "lofarexec-condor", "2.1", "plugin_raises", HOOK_RAISES)
    manager = build_plugin_manager(warn_broken=False)
    line = only_line(manager.broken)
    assert "lofarexec-condor 2.1" in line and "cannot find libcondor" in line
    assert_others_work(manager)


@pytest.mark.parametrize(("source", "words"), [
    (NOT_A_BACKEND, "is not a subclass of lofarexec.Backend"),
    (BAD_SETTINGS_TYPE, "settings field type <class 'dict'> is not supported"),
])
def test_wrong_types_are_one_line(site, source, words):
    install(site, "lofarexec-wrong", "0.0.1", "plugin_wrong", source)
    manager = build_plugin_manager(warn_broken=False)
    line = only_line(manager.broken)
    assert "lofarexec-wrong 0.0.1" in line and words in line
    assert_others_work(manager)
    assert not {"condor", "pbs"} & set(manager.backends.names())


def test_two_packages_claiming_one_backend_name(site):
    install(site, "lofarexec-twin-one", "1.0", "plugin_twin_one", good_backend("twin"))
    install(site, "lofarexec-twin-two", "2.0", "plugin_twin_two", good_backend("twin"))
    manager = build_plugin_manager(warn_broken=False)
    line = only_line(manager.broken)
    assert "backend 'twin' is provided twice" in line
    assert "lofarexec-twin-one 1.0" in line and "lofarexec-twin-two 2.0" in line
    assert manager.backends.get("twin").name == "twin"  # the first keeps it
    assert_others_work(manager)


def test_two_packages_claiming_one_plugin_name(site):
    install(site, "lofarexec-first", "1.0", "plugin_first", good_backend("first"),
            entry_point="shared")
    install(site, "lofarexec-second", "1.0", "plugin_second", good_backend("second"),
            entry_point="shared")
    manager = build_plugin_manager(warn_broken=False)
    line = only_line(manager.broken)  # the first on the path wins; the other is named
    assert "plugin 'shared'" in line and "uninstall one of them" in line
    assert "lofarexec-first 1.0" in line and "lofarexec-second 1.0" in line
    assert len({"first", "second"} & set(manager.backends.names())) == 1
    loser = "second" if "first" in manager.backends.names() else "first"
    assert line.startswith(f"plugin 'shared' = plugin_{loser} from lofarexec-{loser} 1.0")


def test_a_run_warns_and_a_missing_backend_says_why(site, caplog):
    install(site, "lofarexec-htcondor", "0.3", "plugin_importfails_run",
            "raise ImportError('needs htcondor bindings')\n", entry_point="htcondor")
    with caplog.at_level(logging.WARNING, logger="lofarexec.plugin"):
        manager = build_plugin_manager()
    assert [r.getMessage() for r in caplog.records] == manager.broken
    with pytest.raises(PluginError) as caught:
        manager.backends.get("htcondor")
    message = str(caught.value)
    assert "no backend called 'htcondor'" in message and "needs htcondor bindings" in message
    assert "\n" not in message


def test_cli_lists_the_working_backends_and_one_line_per_broken_plugin(site):
    install(site, "lofarexec-htcondor", "0.3", "plugin_importfails_cli",
            "raise ImportError('needs htcondor bindings')\n")
    install(site, "lofarexec-condor", "2.1", "plugin_raises_cli", HOOK_RAISES)
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "backends", "-v"],
                            text=True, capture_output=True, timeout=60,
                            env={**_environment(), "PYTHONPATH": str(site)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert any("lofarexec-htcondor 0.3" in line for line in lines)
    assert any("lofarexec-condor 2.1" in line for line in lines)
    names = {line.split()[0] for line in result.stdout.splitlines() if not line[0].isspace()}
    assert {"local", "mock", "ssh"} <= names


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)

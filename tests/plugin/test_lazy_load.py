"""A run imports only the backend it is configured with (issue 17: start-up cost), while every
other backend is still found by name, listed, and known to the configuration check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig, load_config
from lofarexec.errors import ConfigError, PluginError
from lofarexec.plugin.confignames import check_config_names
from lofarexec.plugin.manager import build_plugin_manager
from tests.helpers import write_config
from tests.plugin.dists import good_backend, install

RECIPE = """\
import json, sys
from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

class lazy(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        job = ComputeJob("localhost", f"{sys.executable} {NODE}")
        self._schedule_jobs([job])
        modules = sorted({name.split(".")[0] for name in sys.modules} & {
            "paramiko", "lofarexec_paramiko", "lofarexec_ssh", "lofarexec_local"})
        print(json.dumps({"state": job.results["state"], "modules": modules}))
        return 0

if __name__ == "__main__":
    sys.exit(lazy().main())
"""

NODE = """\
import sys
from lofarexec.node import LOFARnode

class lazy(LOFARnode):
    def run(self, *args):
        return 0

if __name__ == "__main__":
    sys.exit(lazy(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""

HOOKS_ONLY = """\
from lofarexec import hookimpl

@hookimpl
def lofarexec_run_finished(run, jobs):
    pass
"""


def test_a_local_run_does_not_import_paramiko(tmp_path: Path):
    node = tmp_path / "node.py"
    node.write_text(NODE)
    recipe = tmp_path / "lazy.py"
    recipe.write_text(RECIPE.replace("{NODE}", str(node)))
    config = write_config(tmp_path, "[paramiko]\n")  # its section is known all the same
    done = subprocess.run([sys.executable, str(recipe), "-j", "lazy", "-c", str(config)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[0])
    assert report["state"] == "succeeded"
    assert report["modules"] == ["lofarexec_local"]


def test_a_plugin_backend_is_found_by_name_and_every_backend_is_listed(site):
    install(site, "lofarexec-fine", "1.0", "plugin_fine_lazy", good_backend("fine_lazy"))
    install(site, "lofarexec-watch", "0.1", "plugin_hooks_only", HOOKS_ONLY)
    manager = build_plugin_manager(warn_broken=False)
    assert manager.has_plugin("plugin_hooks_only")  # others' plugins may follow runs: loaded
    assert "local" in manager.deferred_names() and "paramiko" in manager.deferred_names()
    assert manager.backends.get("fine_lazy").name == "fine_lazy"
    assert manager.backends.provider("fine_lazy") == "lofarexec-fine 1.0"
    assert manager.backends.get("local").name == "local"
    assert "paramiko" in manager.deferred_names()  # asking for local loaded local only
    assert {"fine_lazy", "local", "ssh", "paramiko", "mock"} <= set(manager.backends.names())
    assert manager.deferred_names() == [] and manager.broken == []


def test_built_in_entry_points_register_the_backend_of_their_name_and_nothing_else():
    manager = build_plugin_manager(warn_broken=False)
    deferred = manager.deferred_names()
    for name in deferred:
        assert manager.backends.get(name).name == name
    for name in deferred:
        plugin = manager.get_plugin(name)
        hooks = [caller.name for caller in manager.get_hookcallers(plugin) or []]
        assert hooks == ["lofarexec_register_backends"], (name, hooks)


def load(directory: Path, text: str) -> PipelineConfig:
    return load_config(write_config(directory, text), job_name="lazy", start_time="now")


def test_config_check_loads_the_other_backends_only_for_a_name_it_does_not_know(tmp_path: Path):
    manager = build_plugin_manager(warn_broken=False)
    check_config_names(load(tmp_path, "[paramiko]\n[docker]\nimage = busybox\n"), [],
                       method="local", manager=manager)
    assert "paramiko" in manager.deferred_names() and "cmdline" in manager.deferred_names()

    manager = build_plugin_manager(warn_broken=False)
    with pytest.raises(ConfigError, match=r"did you mean \[paramiko\]"):
        check_config_names(load(tmp_path, "[paramikko]\n"), [], method="local", manager=manager)
    assert manager.deferred_names() == []  # checked again against every backend first


def test_an_unknown_method_still_lists_every_installed_backend():
    manager = build_plugin_manager(warn_broken=False)
    with pytest.raises(PluginError, match="installed: .*local.*paramiko.*ssh"):
        manager.backends.get("nosuch")


def test_a_run_looks_for_plugins_once_and_warns_of_a_broken_one_once(tmp_path: Path, site):
    install(site, "lofarexec-htcondor", "0.3", "plugin_importfails_once",
            "raise ImportError('needs htcondor bindings')\n", entry_point="htcondor")
    install(site, "lofarexec-watch", "0.1", "plugin_hooks_only_once", HOOKS_ONLY)
    node = tmp_path / "node.py"
    node.write_text(NODE)
    recipe = tmp_path / "lazy.py"
    recipe.write_text(RECIPE.replace("{NODE}", str(node)))
    counter = tmp_path / "count" / "sitecustomize.py"  # counts the searches in the recipe
    counter.parent.mkdir()
    counter.write_text(
        "import atexit, sys\n"
        "from lofarexec.plugin import entrypoints\n"
        "calls = []\n"
        "search = entrypoints.installed_entry_points\n"
        "entrypoints.installed_entry_points = lambda group: calls.append(group) or search(group)\n"
        "atexit.register(lambda: sys.stderr.write(f'searches: {len(calls)}\\n'))\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(counter.parent), str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    config = write_config(tmp_path)
    done = subprocess.run([sys.executable, str(recipe), "-j", "lazy", "-c", str(config)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          env=environment)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["state"] == "succeeded"
    assert done.stderr.count("needs htcondor bindings") == 1, done.stderr
    assert "searches: 1\n" in done.stderr


def test_a_manager_built_on_another_has_its_plugins_without_a_search(site, monkeypatch):
    install(site, "lofarexec-fine", "1.0", "plugin_fine_adopt", good_backend("fine_adopt"))
    install(site, "lofarexec-broken", "0.1", "plugin_broken_adopt", "raise ImportError('no')\n")
    first = build_plugin_manager(warn_broken=False)
    first.backends.get("local")
    searches = []
    monkeypatch.setattr("lofarexec.plugin.manager.installed_entry_points",
                        lambda group: searches.append(group) or [])

    class Extra:
        pass

    extra = Extra()
    second = build_plugin_manager([extra], warn_broken=False, installed=first)
    assert searches == []
    assert second.broken == first.broken and len(second.broken) == 1
    assert second.has_plugin("plugin_fine_adopt") and second.is_registered(extra)
    assert not first.is_registered(extra)
    assert second.backends.provider("fine_adopt") == "lofarexec-fine 1.0"
    assert second.backends.get("local") is first.backends.get("local")
    assert "paramiko" in second.deferred_names()  # still loaded only when asked for
    assert set(second.backends.names()) == set(first.backends.names())

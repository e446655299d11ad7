"""Plugin discovery through real entry points, the registry, the CLI listing, the public API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lofarexec
from lofarexec.backend import Backend, BackendRegistry
from lofarexec.errors import PluginError
from lofarexec.plugin.manager import build_plugin_manager

PLUGIN_MODULE = '''\
"""A third party's backend: echoes its argv to a file instead of running anything."""
import dataclasses, json
from lofarexec import Backend, Outcome, hookimpl

@dataclasses.dataclass(frozen=True)
class EchoSettings:
    target: str = "/dev/null"

class EchoBackend(Backend):
    """Writes each job's argv as a JSON line to [echo] target."""
    name = "echo"
    Settings = EchoSettings

    def start(self, request, report):
        with open(self.settings.target, "a") as out:
            out.write(json.dumps([request.host, *request.argv]) + "\\n")
        report(Outcome(0))
        return self

    def kill(self):
        pass

@hookimpl
def lofarexec_register_backends(registry):
    registry.add(EchoBackend)
'''

PLUGIN_PYPROJECT = '''\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "lofarexec-echo"
version = "1.2.3"

[project.entry-points.lofarexec]
echo = "lofarexec_echo"
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """The tiny plugin package, really installed (pip, into a target folder)."""
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "lofarexec_echo.py").write_text(PLUGIN_MODULE)
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=120,
    )
    return target


def with_plugin(target: Path) -> dict[str, str]:
    path = os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_cli_lists_installed_backends_with_their_package(installed_plugin):
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "backends"], text=True,
                            capture_output=True, env=with_plugin(installed_plugin), timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "lofarexec-echo 1.2.3" in rows["echo"]
    assert "lofarexec " in rows["local"]
    assert "mock" in rows


def test_recipe_runs_through_a_third_party_backend(installed_plugin, tmp_path):
    from tests.helpers import REPO, write_config

    target = tmp_path / "echo.jsonl"
    # the echo backend runs nothing remote: the loopback log address is what a test wants
    config = write_config(tmp_path, f"[echo]\ntarget = {target}\n"
                          "[logging]\nadvertise_address = 127.0.0.1\n", method="echo")
    recipe = REPO / "recipes" / "master" / "example_parallel.py"
    result = subprocess.run([sys.executable, str(recipe), "-j", "e", "-c", str(config), "nodeX"],
                            text=True, capture_output=True, env=with_plugin(installed_plugin),
                            timeout=60)
    assert result.returncode == 0, result.stderr
    line = target.read_text()
    assert line.startswith('["nodeX", "python", ') and line.rstrip().endswith('"example_argument"]')


def test_unknown_method_lists_the_installed_backends():
    manager = build_plugin_manager()
    with pytest.raises(PluginError) as caught:
        manager.backends.get("nosuch")
    message = str(caught.value)
    assert "'nosuch'" in message and "local" in message and "mock" in message
    assert "\n" not in message


def test_registry_refuses_two_backends_of_one_name_and_bad_names():
    class One(Backend):
        name = "same"

        def start(self, request, report):  # pragma: no cover - never run
            raise AssertionError

    class Two(One):
        pass

    class Nameless(One):
        name = "not a name"

    registry = BackendRegistry()
    registry.add(One)
    with pytest.raises(PluginError, match="provided twice"):
        registry.add(Two)
    with pytest.raises(PluginError, match="valid identifier"):
        registry.add(Nameless)


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lofarexec]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('needs libfoo')\n")
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "backends"], text=True,
                            capture_output=True, env=with_plugin(tmp_path), timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "broken-plugin 0.1" in result.stderr and "needs libfoo" in result.stderr


def test_a_plugin_that_fails_to_register_is_named(tmp_path):
    dist = tmp_path / "odd_plugin-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-plugin\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[lofarexec]\nodd = odd_plugin_module\n")
    (tmp_path / "odd_plugin_module.py").write_text(
        "from lofarexec import hookimpl\n\n"
        "@hookimpl\ndef lofarexec_register_backends(registry, no_such_argument):\n    pass\n"
    )
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "backends"], text=True,
                            capture_output=True, env=with_plugin(tmp_path), timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "plugin 'odd'" in result.stderr and "odd-plugin 2.0" in result.stderr
    assert "no_such_argument" in result.stderr


def test_built_in_plugins_come_from_lofarexec_and_extra_ones_are_named_so():
    class Extra:
        @lofarexec.hookimpl
        def lofarexec_register_backends(self, registry):
            pass

    extra = Extra()
    manager = build_plugin_manager([extra])
    providers = {dist.project_name for _, dist in manager.list_plugin_distinfo()}
    assert "lofarexec" in providers
    assert manager.provider(extra) == "lofarexec"
    assert manager.backends.provider("local").split()[0] == "lofarexec"


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "lofarexec.cli", "--help"], text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0 and "backends" in result.stdout


def test_public_api_is_complete_and_sorted():
    assert lofarexec.__all__ == sorted(lofarexec.__all__)
    for name in lofarexec.__all__:
        assert getattr(lofarexec, name) is not None
    assert set(lofarexec.__all__) >= {"ComputeJob", "BaseRecipe", "RemoteCommandRecipeMixIn",
                                      "LOFARnode", "Backend", "hookimpl", "PipelineQuit"}


def test_hooks_are_all_documented():
    from lofarexec.plugin import spec

    hooks = [name for name in dir(spec) if name.startswith("lofarexec_")]
    assert len(hooks) == 5
    for name in hooks:
        doc = getattr(spec, name).__doc__
        assert doc and "versionadded" in doc and "Called" in doc or "called" in doc


def test_seed_import_paths_reexport_the_same_objects():
    from lofarpipe.support import baserecipe, group_data, lofarnode, remotecommand

    assert lofarnode.LOFARnode is lofarexec.LOFARnode
    assert baserecipe.BaseRecipe is lofarexec.BaseRecipe
    assert remotecommand.ComputeJob is lofarexec.ComputeJob
    assert remotecommand.RemoteCommandRecipeMixIn is lofarexec.RemoteCommandRecipeMixIn
    assert callable(group_data.load_data_map)
    textwrap.dedent("")

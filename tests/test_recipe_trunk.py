"""BaseRecipe as the later framework's recipes use it: ``__file__`` before ``__init__``,
``self.environment``, ``_store_data_map``, ConfigParser calls on ``self.config``, and an
exception in ``go()`` as one line and exit status 1."""

from __future__ import annotations

import configparser
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.mapfiles.datamaps import DataMap, load_map
from lofarexec.recipe import BaseRecipe
from tests.helpers import REPO, write_config


class early(BaseRecipe):
    """Reads ``__file__`` before calling ``BaseRecipe.__init__``, as trunk recipes may."""

    def __init__(self) -> None:
        self.seen_before_init = self.__file__
        super().__init__()


def test_file_is_the_recipe_module_s_even_before_init() -> None:
    recipe = early()
    assert recipe.seen_before_init == recipe.__file__ == str(Path(__file__).resolve())


def test_environment_holds_the_master_s_path_and_root_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOFARROOT", "/opt/lofar")
    monkeypatch.setenv("CASAPATH", "/opt/casa")
    monkeypatch.setenv("QUEUE_PREFIX", "test.")
    monkeypatch.setenv("LOFARENV", "TEST")
    monkeypatch.setenv("UNRELATED", "x")
    monkeypatch.setenv("PATHOLOGY", "not a path")
    environment = BaseRecipe().environment
    assert environment["LOFARROOT"] == "/opt/lofar" and environment["CASAPATH"] == "/opt/casa"
    assert environment["QUEUE_PREFIX"] == "test." and environment["LOFARENV"] == "TEST"
    assert "PATH" in environment
    assert "UNRELATED" not in environment and "PATHOLOGY" not in environment


def test_store_data_map_writes_the_map_and_says_so(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    recipe = BaseRecipe()
    path = tmp_path / "out.mapfile"
    with caplog.at_level(logging.DEBUG):
        recipe._store_data_map(str(path), DataMap([("node1", "/a.MS", False)]), "the output")
        recipe._store_data_map(str(tmp_path / "tuples.mapfile"), [("node2", "/b.MS")])
    assert [(item.host, item.file) for item in load_map(path)] == [("node1", "/a.MS")]
    assert [item.host for item in load_map(tmp_path / "tuples.mapfile")] == ["node2"]
    assert f"Wrote data_map <{path}>: the output" in caplog.text


def test_config_answers_the_configparser_calls_recipes_make(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[remote]\nmethod = local\nglobalfs = yes\n"
                        "[bbs]\nthreads = 4\nratio = 0.5\ndb = %(runtime_directory)s/db\n")
    config = load_config(path, job_name="j", start_time="now")
    assert config.has_option("remote", "globalfs") and not config.has_option("remote", "x")
    assert config.has_option("bbs", "runtime_directory")  # DEFAULT's keys count, as in configparser
    assert not config.has_option("nosuch", "key") and config.has_section("bbs")
    assert config.getboolean("remote", "globalfs") is True
    assert config.getboolean("remote", "absent", fallback=False) is False
    assert config.getint("bbs", "threads") == 4 and config.getfloat("bbs", "ratio") == 0.5
    assert config.get("bbs", "db") == f"{tmp_path}/runtime/db"
    assert dict(config.items("bbs"))["threads"] == "4"
    assert "threads" in config.options("bbs")
    assert config.defaults()["runtime_directory"] == f"{tmp_path}/runtime"
    with pytest.raises(configparser.NoOptionError) as caught:  # `except NoOptionError:` works
        config.get("DEFAULT", "task_files")
    assert isinstance(caught.value, ConfigError) and "add 'task_files = ...'" in str(caught.value)
    with pytest.raises(configparser.NoSectionError):
        config.getint("nosuch", "key")
    with pytest.raises(ConfigError, match="key 'threads': value 'four'"):
        config.set("bbs", "threads", "four")
        config.getint("bbs", "threads")


FAILING = """\
import sys
from lofarpipe.support.baserecipe import BaseRecipe

class failing(BaseRecipe):
    def go(self):
        super().go()
        return {}["missing key"]

if __name__ == "__main__":
    sys.exit(failing().main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("debug", [False, True])
def test_an_exception_in_go_is_one_line_and_status_1(tmp_path: Path, debug: bool) -> None:
    recipe = tmp_path / "failing.py"
    recipe.write_text(FAILING)
    config = write_config(tmp_path)
    result = subprocess.run(
        [sys.executable, str(recipe), "-j", "j", "-c", str(config), *(["-d"] if debug else [])],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors == [textwrap.dedent(errors[0])] and len(errors) == 1, result.stderr
    assert errors[0].endswith("failing: recipe failing failed: KeyError: 'missing key'")
    assert ("Traceback (most recent call last)" in result.stderr) is debug


TRUNK_MASTER = """\
import os, sys
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.remotecommand import RemoteCommandRecipeMixIn, ComputeJob

class trunkpair(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        command = "python3 %s" % (self.__file__.replace("master", "nodes"))
        jobs = [ComputeJob("localhost", command, arguments=[self.environment, True, None, [1, 2]],
                           resources={"cores": 2})]
        self._schedule_jobs(jobs)
        self.outputs["echo"] = jobs[0].results.get("echo") == [self.environment, True, None, [1, 2]]
        self.outputs["omp"] = jobs[0].results.get("omp")
        return 1 if self.error.is_set() else 0

if __name__ == "__main__":
    sys.exit(trunkpair().main())
"""
TRUNK_PAIR_NODE = """\
import os, sys
from lofarpipe.support.lofarnode import LOFARnodeTCP

class trunkpair(LOFARnodeTCP):
    def run(self, environment, flag, nothing, items):
        self.outputs["echo"] = [environment, flag, nothing, items]
        self.outputs["omp"] = os.environ["OMP_NUM_THREADS"]
        return 0

if __name__ == "__main__":
    jobid, jobhost, jobport = sys.argv[1:4]
    sys.exit(trunkpair(jobid, jobhost, jobport).run_with_stored_arguments())
"""


@pytest.mark.slow
def test_a_trunk_shaped_recipe_pair_passes_its_environment_to_its_node(tmp_path: Path) -> None:
    (tmp_path / "master").mkdir()
    (tmp_path / "nodes").mkdir()
    (tmp_path / "master" / "trunkpair.py").write_text(TRUNK_MASTER)
    (tmp_path / "nodes" / "trunkpair.py").write_text(TRUNK_PAIR_NODE)
    config = write_config(tmp_path, "[remote]\nmethod = local\nnode_arguments = stored\n")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "master" / "trunkpair.py"), "-j", "j", "-c", str(config)],
        capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "LOFARROOT": "/opt/lofar"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Results:", "echo = True", "omp = 2"]

"""The shipped mapper recipes: datamapper (asks every host what it holds) and storagemapper."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lofarexec.errors import DataMapError
from lofarexec.job import ComputeJob
from lofarexec.mapfiles.parset import load_data_map, load_host_lists
from tests.helpers import REPO, write_config

MASTER = REPO / "recipes" / "master"


def recipe_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", MASTER / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the recipe finds its own file through its module
    spec.loader.exec_module(module)
    return module


def run_recipe(name: str, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MASTER / f"{name}.py"), *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=timeout)


def make_data(root: Path, counts: dict[str, int]) -> dict[str, list[str]]:
    """``root/HOST/data/SBnnn.MS`` folders (a Measurement Set is a folder), plus a decoy."""
    held = {}
    for host, count in counts.items():
        data = root / host / "data"
        data.mkdir(parents=True)
        (data / "notes.txt").write_text("not a measurement set")
        held[host] = [str(data / f"SB{index:03d}.MS") for index in range(count)]
        for path in held[host]:
            Path(path).mkdir()
    return held


# -- storagemapper -----------------------------------------------------------------------------
def test_storagemapper_takes_the_host_from_the_path(tmp_path):
    listing = tmp_path / "paths.txt"
    listing.write_text("# from the archive\n/net/sub3/lse007/data/L1/SB000.MS\n\n"
                       "/net/sub3/lse008/data/L1/SB 001.MS\n/net/sub4/lse007/data/L1/SB002.MS\n")
    config = write_config(tmp_path)
    recipe = recipe_module("storagemapper").storagemapper()
    assert recipe.main(["-j", "store", "-c", str(config), str(listing)]) == 0
    mapfile = tmp_path / "runtime" / "jobs" / "store" / "mapfiles" / "storagemapper.mapfile"
    assert recipe.outputs["mapfile"] == str(mapfile)
    assert load_host_lists(mapfile) == [
        ("lse007", ["/data/L1/SB000.MS", "/data/L1/SB002.MS"]),
        ("lse008", ["/data/L1/SB 001.MS"]),
    ]


def test_storagemapper_dry_run_writes_no_mapfile(tmp_path):
    listing = tmp_path / "paths.txt"
    listing.write_text("/net/sub3/lse007/data/L1/SB000.MS\n")
    config = write_config(tmp_path)
    recipe = recipe_module("storagemapper").storagemapper()
    assert recipe.main(["-j", "store", "-n", "-c", str(config), str(listing)]) == 0
    assert not (tmp_path / "runtime").exists()


def test_storagemapper_component_is_configurable(tmp_path):
    listing = tmp_path / "paths.txt"
    listing.write_text("/mnt/node2/scratch/a.MS\n")
    mapfile = tmp_path / "out" / "my.mapfile"
    recipe = recipe_module("storagemapper").storagemapper()
    assert recipe.main(["-j", "store", "-c", str(write_config(tmp_path)), "--component", "2",
                        "--mapfile", str(mapfile), str(listing)]) == 0
    assert load_data_map(mapfile) == [("node2", "/scratch/a.MS")]


@pytest.mark.parametrize(("line", "what"), [
    ("net/sub3/lse007/x.MS", "'net/sub3/lse007/x.MS' is not an absolute path"),
    ("/net/sub3/lse007", "'/net/sub3/lse007' has no file after path component 3 (the host)"),
    ("/net/sub3/lse 7/x.MS", "component 3 of '/net/sub3/lse 7/x.MS', 'lse 7', is not a host"),
])
def test_storagemapper_bad_path_names_list_file_and_line(tmp_path, line, what):
    module = recipe_module("storagemapper")
    listing = tmp_path / "paths.txt"
    listing.write_text(f"/net/sub3/lse001/ok.MS\n\n{line}\n")
    with pytest.raises(DataMapError, match=f"^{re.escape(f'{listing}:3: {what}')}"):
        module.read_path_list(str(listing), 3)


def test_storagemapper_failure_is_one_line(tmp_path):
    result = run_recipe("storagemapper", "-j", "store", "-c", write_config(tmp_path),
                        tmp_path / "missing.txt")
    assert result.returncode == 1
    assert f"recipe storagemapper failed: {tmp_path / 'missing.txt'}: cannot read path list" \
        in result.stderr
    assert "Traceback" not in result.stderr


# -- datamapper: what the master makes of its arguments and of the nodes' findings -------------
def datamapper(**inputs: object):
    recipe = recipe_module("datamapper").datamapper()
    recipe.inputs.update({"args": [], **inputs})
    return recipe


def test_datamapper_search_per_host():
    recipe = datamapper(pattern="/data/{host}/*.MS", args=["node1", "node3:/d/{host}/x*.MS"],
                        hosts="node5")
    assert recipe._searches() == [("node1", "/data/node1/*.MS"), ("node3", "/d/node3/x*.MS"),
                                  ("node5", "/data/node5/*.MS")]
    recipe = datamapper(pattern="*.MS", args=["node2:/d/two"], hosts=" node4:/d/{host} ,")
    assert recipe._searches() == [("node2", "/d/two/*.MS"), ("node4", "/d/node4/*.MS")]
    assert datamapper(args=["node6:/d/six"])._searches() == [("node6", "/d/six/*")]
    with pytest.raises(ValueError, match="node2:/d/two: give a relative --pattern to glob in"):
        datamapper(pattern="/abs/*.MS", args=["node2:/d/two"])._searches()


@pytest.mark.parametrize(("inputs", "what"), [
    ({}, "no hosts"),
    ({"args": ["node1"]}, "no pattern for host 'node1'"),
    ({"args": ["node1"], "pattern": "data/*.MS"}, "is not absolute"),
    ({"args": ["node1", "node1:/x/*.MS"], "pattern": "/x/*"}, "host 'node1' is given twice"),
    ({"args": ["bad host"], "pattern": "/x"}, "'bad host' is not a host name"),
])
def test_datamapper_unusable_arguments(inputs, what):
    with pytest.raises(ValueError, match=what):
        datamapper(**inputs)._searches()


def finished(host: str, state: str = "succeeded", reason: str | None = None) -> ComputeJob:
    job = ComputeJob(host, "python3 x.py")
    job.results.update(state=state, reason=reason, returncode=0 if state == "succeeded" else 1)
    return job


def test_datamapper_collects_findings_and_names_each_failure(tmp_path, caplog):
    files = [tmp_path / f"{n}.json" for n in range(5)]
    files[0].write_text(json.dumps({"host": "node1", "files": ["/a", "/b"]}))
    files[1].write_text(json.dumps({"host": "node2", "files": []}))
    files[2].write_text("{half")
    files[4].write_text(json.dumps({"host": "other", "files": ["/x"]}))
    jobs = [finished("node1"), finished("node2"), finished("node3"),
            finished("node4", "transport_error", "the connection failed: refused"),
            finished("node5")]
    held, failed = datamapper()._collect(jobs, files)
    assert held == {"node1": ["/a", "/b"], "node2": []}
    assert failed == ["node3", "node4", "node5"]
    assert "node3 failed: the node script ended well but its findings" in caplog.text
    assert "node4 failed: transport_error: the connection failed: refused" in caplog.text
    assert "node5 failed: the findings in" in caplog.text


def test_datamapper_runs_the_node_script_on_every_host(tmp_path):
    """With the local backend every 'host' runs here: fast, and the same code path."""
    expected = make_data(tmp_path, {"node1": 2, "node2": 0, "node3": 1})
    mapfile = tmp_path / "found.map"
    result = run_recipe("datamapper", "-j", "map", "-c", write_config(tmp_path), "--mapfile",
                        mapfile, "--pattern", f"{tmp_path}/{{host}}/data/*.MS", "node1", "node2",
                        "node3", "nodeX")
    assert result.returncode == 0, result.stderr
    assert f"mapfile = {mapfile}" in result.stdout
    assert load_host_lists(mapfile) == [*expected.items(), ("nodeX", [])]
    findings = sorted(p.name for p in (tmp_path / "runtime/jobs/map/datamapper").iterdir())
    assert findings == ["0000-node1.json", "0001-node2.json", "0002-node3.json",
                        "0003-nodeX.json"]


# -- datamapper on the ssh test bed: real hosts, each with its own folder ----------------------
def ssh_config(tmp_path: Path, bed) -> Path:
    return write_config(tmp_path, f"[remote]\nmethod = ssh\n[ssh]\nconfig_file = {bed.ssh_config}\n"
                        "[logging]\nbind_address = 127.0.0.1\nadvertise_address = 127.0.0.1\n")


@pytest.mark.slow
def test_datamapper_over_ssh_finds_each_hosts_own_files(ssh_testbed, tmp_path):
    expected = make_data(tmp_path, {"node1": 3, "node2": 1, "node3": 2, "node4": 0})
    result = run_recipe("datamapper", "-j", "map", "-d", "-c", ssh_config(tmp_path, ssh_testbed),
                        "--pattern", f"{tmp_path}/{{host}}/data/*.MS", "--hosts",
                        "node1,node2,node3,node4")
    assert result.returncode == 0, result.stderr
    mapfile = tmp_path / "runtime" / "jobs" / "map" / "mapfiles" / "datamapper.mapfile"
    assert f"mapfile = {mapfile}" in result.stdout
    assert load_host_lists(mapfile) == list(expected.items())
    for host in ("node1", "node2", "node3", "node4"):
        assert f"Dispatching command to {host} with ssh" in result.stderr
    assert f"INFO    node.node1.datamapper: 3 matches for {tmp_path}/node1/data" in result.stderr


@pytest.mark.slow
def test_datamapper_over_ssh_names_a_failed_host_and_maps_the_others(ssh_testbed, tmp_path):
    expected = make_data(tmp_path, {"node1": 1, "node2": 2, "node3": 1})
    ssh_testbed.stop_host("node2")
    try:
        result = run_recipe("datamapper", "-j", "map", "-c", ssh_config(tmp_path, ssh_testbed),
                            "--pattern", "*.MS", *(f"{host}:{tmp_path}/{host}/data"
                                                   for host in ("node1", "node2", "node3")))
    finally:
        ssh_testbed.start_host("node2")
    assert result.returncode == 1
    mapfile = tmp_path / "runtime" / "jobs" / "map" / "mapfiles" / "datamapper.mapfile"
    assert load_host_lists(mapfile) == [("node1", expected["node1"]),
                                        ("node3", expected["node3"])]
    assert "datamapper on node2 failed: transport_error: " in result.stderr
    assert "failed_hosts = ['node2']" in result.stdout
    assert "Traceback" not in result.stderr

"""Recipes written here in the later framework's shape (typed ingredients, stored arguments,
data maps in and out, utilities, pipelinelogging) run on the local backend and over ssh."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, write_config

HERE = Path(__file__).resolve().parent
STORED = "[remote]\nmethod = local\nnode_arguments = stored\n"


def over_ssh(bed) -> str:
    return (f"[remote]\nmethod = ssh\nnode_arguments = stored\n[ssh]\nconfig_file = "
            f"{bed.ssh_config}\n[logging]\nbind_address = 127.0.0.1\n"
            "advertise_address = 127.0.0.1\n")


def run(name: str, config: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOFARROOT": "/opt/lofar-shaped"}
    return subprocess.run([sys.executable, str(HERE / "master" / f"{name}.py"), "-j", "J",
                           "-c", str(config), "-d", *map(str, args)], env=env, cwd=config.parent,
                          capture_output=True, text=True, timeout=120)


def write_map(path: Path, entries: list[tuple[str, Path]]) -> Path:
    path.write_text(repr([{"host": h, "file": str(f), "skip": False} for h, f in entries]))
    return path


def read_map(path: Path) -> list[tuple[str, str, bool]]:
    return [(e["host"], e["file"], e["skip"]) for e in ast.literal_eval(path.read_text())]


def gather(tmp_path: Path, hosts: list[str], config_text: str) -> None:
    """Three files gathered to ``hosts``, the middle one missing: its target is skipped."""
    (tmp_path / "src").mkdir()
    sources = [tmp_path / "src" / f"f{i}.txt" for i in range(3)]
    for i in (0, 2):
        sources[i].write_text(f"payload {i}\n")
    targets = [tmp_path / "dst" / host / f"f{i}.txt" for i, host in enumerate(hosts)]
    result = run("gather", write_config(tmp_path, config_text),
                 "--sources", write_map(tmp_path / "sources.map", list(zip(hosts, sources))),
                 "--targets", write_map(tmp_path / "targets.map", list(zip(hosts, targets))),
                 "--mapfile", tmp_path / "gathered.map", "--keep", "False")
    assert result.returncode == 0, result.stderr
    assert read_map(tmp_path / "gathered.map") == [
        (host, str(target), i == 1) for i, (host, target) in enumerate(zip(hosts, targets))]
    assert [t.read_text() for t in (targets[0], targets[2])] == ["payload 0\n", "payload 2\n"]
    assert not sources[0].exists() and not targets[1].exists()  # --keep False moved them
    assert f"node.{hosts[1]}.gather: no such file: {sources[1]}" in result.stderr
    assert f"node.{hosts[2]}.gather: gathered {targets[2]} (keep=False, LOFARROOT=" \
           f"/opt/lofar-shaped, on {hosts[2]})" in result.stderr
    assert "Total time" in result.stderr  # pipelinelogging.log_time on the node
    assert f"mapfile = {tmp_path / 'gathered.map'}" in result.stdout


@pytest.mark.slow
def test_a_gather_shaped_pair_runs_on_the_local_backend(tmp_path: Path) -> None:
    gather(tmp_path, ["localhost"] * 3, STORED)


@pytest.mark.slow
def test_a_gather_shaped_pair_runs_over_ssh(tmp_path: Path, ssh_testbed) -> None:
    gather(tmp_path, ["node1", "node2", "node3"], over_ssh(ssh_testbed))


def run_program(tmp_path: Path, hosts: list[str], config_text: str) -> None:
    """A program run on each file of a map with an environment update; a missing file's run
    fails and is skipped in the map written."""
    program = tmp_path / "greet.sh"
    program.write_text('#!/bin/sh\necho "$GREETING from $OMP_NUM_THREADS: $1"\n')
    program.chmod(0o755)
    files = [tmp_path / f"in{i}.ms" for i in range(len(hosts))]
    for f in files[:-1]:
        f.write_text("data\n")
    result = run("run_program", write_config(tmp_path, config_text),
                 "--executable", program, "--arguments", "[{infile}]",
                 "--mapfile-in", write_map(tmp_path / "in.map", list(zip(hosts, files))),
                 "--stepname", "greeted", "--environment", "{'GREETING': 'hello'}",
                 "-w", tmp_path / "work")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "runtime" / "jobs" / "J" / "mapfiles" / "greeted.mapfile"
    assert read_map(written) == [(host, str(f), f == files[-1]) for host, f in zip(hosts, files)]
    for host, f in zip(hosts[:-1], files[:-1]):  # CatchLog4CPlus's logger, named per file
        assert f"node.{host}.run_program.{f.name}: {program} stdout: hello from 2: {f}" \
            in result.stderr
    assert f"Dataset {files[-1]} does not exist" in result.stderr


@pytest.mark.slow
def test_a_run_program_shaped_pair_runs_on_the_local_backend(tmp_path: Path) -> None:
    run_program(tmp_path, ["localhost"] * 3, STORED)


@pytest.mark.slow
def test_a_run_program_shaped_pair_runs_over_ssh(tmp_path: Path, ssh_testbed) -> None:
    run_program(tmp_path, ["node2", "node3", "node4"], over_ssh(ssh_testbed))

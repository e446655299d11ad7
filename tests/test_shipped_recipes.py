"""The recipes shipped in recipes/ that exercise the job channel, run as programs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, write_config

BBS = REPO / "recipes" / "master" / "bbs.py"


def run_bbs(config, *args, timeout=120):
    return subprocess.run([sys.executable, str(BBS), "-j", "bbs", "-v", "-c", str(config),
                           "--python", sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def journal(config_dir):
    from lofarexec.run.journal import read_journal

    entries = read_journal(config_dir / "runtime" / "jobs" / "bbs")
    return {entry["host"]: entry for entry in entries}


def test_bbs_controller_and_workers_run_in_step(tmp_path):
    config = write_config(tmp_path, "[local]\nkill_grace = 0.5\n")
    result = run_bbs(config, "--steps", "4", "h1", "h2", "h3", "h4")
    assert result.returncode == 0, result.stderr
    assert "solution = " in result.stdout
    for step in range(4):
        assert f"bbs: step {step}: solution" in result.stderr
    assert all(entry["state"] == "succeeded" for entry in journal(tmp_path).values())


def test_bbs_one_worker_failing_stops_all_at_once(tmp_path):
    config = write_config(tmp_path, "[local]\nkill_grace = 0.5\n")
    started = time.monotonic()
    result = run_bbs(config, "--fail-host", "h3", "h1", "h2", "h3", "h4")
    assert time.monotonic() - started < 60  # the workers would otherwise wait 600 s
    assert result.returncode == 1
    states = {host: entry["state"] for host, entry in journal(tmp_path).items()}
    assert states == {"h1": "killed", "h2": "killed", "h3": "failed", "h4": "killed"}
    assert "controller stopped" in result.stderr


@pytest.mark.slow
def test_bbs_over_ssh(ssh_testbed, tmp_path):
    config = write_config(tmp_path, f"""\
        [remote]
        method = ssh
        [ssh]
        config_file = {ssh_testbed.ssh_config}
        [logging]
        bind_address = 127.0.0.1
        advertise_address = 127.0.0.1
        """)
    result = run_bbs(config, *ssh_testbed.host_names)
    assert result.returncode == 0, result.stderr
    for host in ssh_testbed.host_names:
        assert f"node.{host}.bbs: worker" in result.stderr


EXECUTABLE_ARGS = REPO / "recipes" / "master" / "executable_args.py"
UPPER = """\
#!/bin/sh
# upper INPUT OUTPUT: the input upper-cased; fails on files whose name contains "bad"
case "$1" in *bad*) echo "cannot read $1" >&2; exit 4;; esac
tr a-z A-Z < "$1" > "$2"
"""


def test_executable_args_runs_on_each_file_and_skips_failures(tmp_path):
    from lofarexec.mapfiles.datamaps import DataMap, DataProduct, load_map

    program = tmp_path / "upper"
    program.write_text(UPPER)
    program.chmod(0o755)
    files = {}
    for host, name in [("h1", "a.txt"), ("h2", "b bad.txt"), ("h1", "c.txt"), ("h2", "d.txt")]:
        path = tmp_path / host / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"data of {name}")
        files[name] = (host, str(path))
    inputs = DataMap([DataProduct(h, f) for h, f in files.values()])
    inputs.data[3].skip = True  # skipped by an earlier step: no job
    inputs.save(tmp_path / "in.mapfile")
    config = write_config(tmp_path)
    out = tmp_path / "out.mapfile"
    result = subprocess.run(
        [sys.executable, str(EXECUTABLE_ARGS), "-j", "ea", "-v", "-c", str(config),
         "--python", sys.executable, "--executable", str(program), "--max-per-node", "1",
         "--mapfile-out", str(out), str(tmp_path / "in.mapfile")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1, result.stderr  # one job failed
    products = list(load_map(out))
    assert [(p.host, p.skip) for p in products] == [
        ("h1", False), ("h2", True), ("h1", False), ("h2", True)]
    assert products[0].file == files["a.txt"][1] + ".out"
    assert (tmp_path / "h1" / "a.txt.out").read_text() == "DATA OF A.TXT"
    assert "cannot read" in result.stderr and "1 of 3 jobs failed" in result.stderr
    assert not (tmp_path / "h2" / "d.txt.out").exists()


def test_executable_args_dry_run_writes_nothing_and_exits_0(tmp_path):
    from lofarexec.mapfiles.datamaps import DataMap, DataProduct

    DataMap([DataProduct("h1", str(tmp_path / "a.txt")),
             DataProduct("h2", str(tmp_path / "b.txt"))]).save(tmp_path / "in.mapfile")
    config = write_config(tmp_path, "[logging]\nlog_file = %(runtime_directory)s/run.log\n")
    result = subprocess.run(
        [sys.executable, str(EXECUTABLE_ARGS), "-j", "ea", "-n", "-v", "-c", str(config),
         "--executable", "/bin/true", str(tmp_path / "in.mapfile")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("dry run: would run") == 2
    assert not (tmp_path / "runtime").exists()  # no output mapfile, journal or log file


def test_bbs_dry_run_exits_0_at_once(tmp_path):
    config = write_config(tmp_path)
    result = run_bbs(config, "-n", "h1", "h2", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("dry run: would run") == 2
    assert not (tmp_path / "runtime").exists()

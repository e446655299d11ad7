"""The recipes shipped in recipes/ that exercise the job channel, run as programs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import REPO, write_config

BBS = REPO / "recipes" / "master" / "bbs.py"


def run_bbs(config, *args, timeout=120):
    return subprocess.run([sys.executable, str(BBS), "-j", "bbs", "-v", "-c", str(config),
                           "--python", sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def journal(config_dir):
    lines = (config_dir / "runtime" / "jobs" / "bbs" / "journal.jsonl").read_text().splitlines()
    return {entry["host"]: entry for entry in map(json.loads, lines)}


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

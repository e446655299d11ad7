"""``lofarexec check-hosts``: a probe job per host through the configured backend; a table,
and exit 1 naming each unusable host and why. Real sshd hosts for ssh, real processes for local.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lofarexec.cli import main
from lofarexec.testing.sshbed import UNREACHABLE_HOST
from tests.helpers import REPO, write_config

PYTHON_VERSION = sys.version.split()[0]


def local_config(tmp_path: Path, extra: str = "") -> Path:
    return write_config(tmp_path, f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                        f"recipe_directories = [{REPO / 'recipes'}]\n{extra}")


def ssh_config(tmp_path: Path, bed) -> Path:
    return write_config(tmp_path, f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                        f"recipe_directories = [{REPO / 'recipes'}]\n"
                        "[remote]\nmethod = ssh\n"
                        f"[ssh]\nconfig_file = {bed.ssh_config}\nremote_python = {bed.python}\n")


def check(capsys, *argv: str) -> tuple[int, str, list[str]]:
    status = main(["check-hosts", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def fake_lofarexec(folder: Path, node_source: str) -> Path:
    """A folder whose ``lofarexec`` package stands in for the real one on a node's path."""
    package = folder / "lofarexec"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "9.9-fake"\n')
    (package / "node.py").write_text(node_source)
    return folder


# ---- local backend: real processes

def test_local_hosts_all_usable_exit_0_with_python_version(tmp_path, capsys):
    status, out, err = check(capsys, "-c", str(local_config(tmp_path)), "hostA", "hostB")
    assert status == 0, err
    assert err == []
    for host in ("hostA", "hostB"):
        row = next(line for line in out.splitlines() if f" {host} " in line)
        assert "ok" in row and PYTHON_VERSION in row
        assert str(REPO / "recipes" / "nodes") in row


def test_engine_ppath_is_on_the_probe_path(tmp_path, capsys):
    fake = fake_lofarexec(tmp_path / "engine", "")
    config = local_config(tmp_path, f"[deploy]\nengine_ppath = {fake}\n")
    status, out, err = check(capsys, "-c", str(config), "hostA")
    assert status == 0, err
    assert f"9.9-fake at {fake / 'lofarexec'}" in out


def test_a_node_side_that_does_not_import_makes_the_host_unusable(tmp_path, capsys):
    fake = fake_lofarexec(tmp_path / "engine", "raise ImportError('no numpy here')\n")
    config = local_config(tmp_path, f"[deploy]\nengine_ppath = {fake}\n")
    status, out, err = check(capsys, "-c", str(config), "hostA")
    assert status == 1
    assert err == ["lofarexec: check-hosts: hostA: lofarexec.node does not import (ImportError: "
                   "no numpy here); set [deploy] engine_ppath to the folder holding lofarexec "
                   "on the hosts, or install it there"]
    assert "UNUSABLE" in out


def test_a_missing_node_scripts_folder_makes_the_host_unusable(tmp_path, capsys):
    config = write_config(tmp_path, f"[DEFAULT]\nruntime_directory = {tmp_path}/runtime\n"
                          f"recipe_directories = [{tmp_path}/nowhere]\n")
    status, out, err = check(capsys, "-c", str(config), "hostA")
    assert status == 1
    assert err == [f"lofarexec: check-hosts: hostA: no node scripts' folder ({tmp_path}/nowhere/"
                   "nodes); check [DEFAULT] recipe_directories"]
    assert "missing" in out


def test_a_python_that_is_not_there_is_named(tmp_path, capsys):
    status, _, err = check(capsys, "-c", str(local_config(tmp_path)), "--python",
                           str(tmp_path / "no-python"), "hostA")
    assert status == 1
    assert len(err) == 1 and err[0].startswith("lofarexec: check-hosts: hostA: ")
    assert "no-python" in err[0]


def test_a_host_that_never_answers_is_given_up_after_the_timeout(tmp_path, capsys):
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 600\n")
    silent.chmod(0o755)
    status, _, err = check(capsys, "-c", str(local_config(tmp_path)), "--python", str(silent),
                           "--timeout", "0.5", "hostA")
    assert status == 1
    assert err == ["lofarexec: check-hosts: hostA: no answer within 0.5 s"]


def test_hosts_come_from_a_mapfile(tmp_path, capsys):
    mapfile = tmp_path / "data.map"
    mapfile.write_text("hostM1 = [/d/a.MS, /d/b.MS]\nhostM2 = [/d/c.MS]\n")
    status, out, err = check(capsys, "-c", str(local_config(tmp_path)), "--mapfile",
                             str(mapfile))
    assert status == 0, err
    assert " hostM1 " in out and " hostM2 " in out


def test_no_hosts_is_one_line(tmp_path, capsys):
    status, _, err = check(capsys, "-c", str(local_config(tmp_path)))
    assert status == 1
    assert len(err) == 1 and err[0].startswith("lofarexec: no hosts to check: name them")


def test_an_unknown_method_is_one_line(tmp_path, capsys):
    config = local_config(tmp_path, "[remote]\nmethod = nosuch\n")
    status, _, err = check(capsys, "-c", str(config), "hostA")
    assert status == 1
    assert len(err) == 1 and "no backend called 'nosuch'" in err[0]


# ---- ssh backend: the real sshd bed

@pytest.mark.slow
def test_ssh_hosts_all_up_exit_0_with_python_version(ssh_testbed, tmp_path, capsys):
    status, out, err = check(capsys, "-c", str(ssh_config(tmp_path, ssh_testbed)),
                             "node1", "node2", "node3")
    assert status == 0, err
    rows = [line for line in out.splitlines() if line.startswith("│ node")]
    assert len(rows) == 3
    assert all("ok" in row and PYTHON_VERSION in row for row in rows)


@pytest.mark.slow
def test_ssh_an_unreachable_host_is_named_and_exit_1(ssh_testbed, tmp_path, capsys):
    status, out, err = check(capsys, "-c", str(ssh_config(tmp_path, ssh_testbed)),
                             "node1", UNREACHABLE_HOST, "node2")
    assert status == 1
    assert len(err) == 1 and err[0].startswith(f"lofarexec: check-hosts: {UNREACHABLE_HOST}: ")
    assert "refused" in err[0].lower(), err
    assert sum(PYTHON_VERSION in line for line in out.splitlines()) == 2


@pytest.mark.slow
def test_ssh_a_host_whose_sshd_is_stopped_is_named_and_exit_1(ssh_testbed, tmp_path, capsys):
    ssh_testbed.stop_host("node4")
    try:
        status, out, err = check(capsys, "-c", str(ssh_config(tmp_path, ssh_testbed)),
                                 "node3", "node4")
    finally:
        ssh_testbed.start_host("node4")
    assert status == 1
    assert len(err) == 1 and err[0].startswith("lofarexec: check-hosts: node4: "), err
    node3 = next(line for line in out.splitlines() if " node3 " in line)
    assert "ok" in node3 and PYTHON_VERSION in node3

"""The namespace bed itself: hosts reachable only from the controller namespace, everything
removed afterwards, also when the test failed."""

from __future__ import annotations

import socket
import subprocess

import pytest

from lofarexec.testing.netnsbed import NetnsBed, namespace_pids

pytestmark = pytest.mark.slow


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout


def test_hosts_answer_in_the_controller_namespace_only(netns_bed):
    login = subprocess.run(netns_bed.ssh_command("node2", "echo", "hi"), capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert login.stdout == "hi\n", login.stderr
    with pytest.raises(OSError):  # the root namespace's blackhole route: fails locally
        socket.create_connection((netns_bed.address("node2"), 22), timeout=5).close()


def test_everything_is_removed_after_a_failed_test(netns_bed, tmp_path):
    bed = NetnsBed(tmp_path, hosts=1, tag="x")  # beside the fixture's bed, in one process
    made = [bed.controller, bed.namespace("node1")]
    with pytest.raises(RuntimeError), bed:
        assert bed.host_pids("node1")
        assert set(made) <= set(namespaces().split())
        raise RuntimeError("the test failed")
    assert not set(made) & set(namespaces().split())
    assert namespace_pids(made[1]) == []
    assert netns_bed.namespace("node1") in namespaces()  # the fixture's bed is untouched

"""The fault suite's bed: ssh hosts in network namespaces this test creates and removes."""

from __future__ import annotations

import os

import pytest

from lofarexec.testing.netnsbed import netns_problem, running_netnsbed


@pytest.fixture
def netns_bed(tmp_path_factory):
    """Two hosts, node1 and node2 (10.200.0.2-3), and a controller namespace (10.200.0.1);
    removed after the test whatever happened. Skips saying why, fails under CI, where
    namespaces cannot be made."""
    problem = netns_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with running_netnsbed(tmp_path_factory.mktemp("netns"), hosts=2) as bed:
        yield bed

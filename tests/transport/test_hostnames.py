"""The one host-name check, as every transport, mapfile, host list and ComputeJob applies it."""

from __future__ import annotations

import pytest

from lofarexec import ComputeJob
from lofarexec.config.hostlist import HostListError, expand_hostlist
from lofarexec.errors import JobListError
from lofarexec.mapfiles.parset import is_host_name as parset_is_host_name
from lofarexec.transport import host_name_problem, is_host_name


@pytest.mark.parametrize("host", ["node01", "n1.cluster.example", "10.0.0.7", "::1",
                                  "fe80::1%eth0", "user@node1", "gpu_2-ib"])
def test_host_names_pass(host):
    assert host_name_problem(host) is None
    assert is_host_name(host) and parset_is_host_name(host)


@pytest.mark.parametrize(("host", "why"), [
    ("", "only letters"),
    ("-oProxyCommand=sh", "read as an option"),
    ("two words", "only letters"),
    ("a,b", "only letters"),
    ("n[1-2]", "only letters"),
    ("x\n", "only letters"),
    (7, "not a string"),
])
def test_what_is_no_host_name_says_why(host, why):
    problem = host_name_problem(host)
    assert problem is not None and problem.startswith(f"{host!r} is not a host name")
    assert why in problem


def test_a_transport_may_refuse_more():
    assert host_name_problem("node1:4") is None
    problem = host_name_problem("node1:4", also_refused=":")
    assert problem == "'node1:4' is not a host name here: ':' has a meaning of its own"


def test_compute_jobs_and_host_lists_use_it():
    with pytest.raises(JobListError, match="'-x' is not a host name"):
        ComputeJob("-x", "true")
    assert ComputeJob(None, "true").host is None
    with pytest.raises(HostListError, match="'a b' is not a host name"):
        expand_hostlist("n1, a b")

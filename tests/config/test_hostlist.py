"""Tests of lofarexec.config.hostlist errors: a bad host list is a ConfigError saying where from.

The expansion itself and the order of the sources are tested in tests/run/test_placement.py.
"""

from __future__ import annotations

import pytest

from lofarexec.config.hostlist import HostListError, allocation_hosts, expand_hostlist
from lofarexec.errors import ConfigError


def test_a_bad_host_list_is_a_config_error_and_a_value_error() -> None:
    with pytest.raises(HostListError) as caught:
        expand_hostlist("n[5-2]")
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)
    assert "runs backwards" in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_configured_list_names_file_section_and_key() -> None:
    with pytest.raises(HostListError) as caught:
        allocation_hosts("n[1-", {}, source="/etc/pipeline.cfg")
    error = caught.value
    assert (error.filename, error.section, error.key) == ("/etc/pipeline.cfg", "cluster", "hosts")
    assert str(error).startswith("/etc/pipeline.cfg, section [cluster], key 'hosts': ")


def test_a_bad_slurm_list_names_the_variable_and_the_way_out() -> None:
    with pytest.raises(HostListError) as caught:
        allocation_hosts(None, {"SLURM_JOB_NODELIST": "n[a-b]"}, source="pipeline.cfg")
    message = str(caught.value)
    assert message.startswith("$SLURM_JOB_NODELIST: bad range 'a-b'")
    assert "[cluster] hosts" in message and caught.value.section is None


def test_an_unreadable_pbs_nodefile_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read \$PBS_NODEFILE .*missing"):
        allocation_hosts(None, {"PBS_NODEFILE": str(tmp_path / "missing")})

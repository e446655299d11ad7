"""The settings keys backends share: one default, help text and set of bounds for all."""

from __future__ import annotations

import dataclasses

import pytest
from lofarexec_cmdline import CmdlineSettings
from lofarexec_local import LocalSettings
from lofarexec_mpirun import MpirunSettings
from lofarexec_paramiko import ParamikoSettings
from lofarexec_srun import SrunSettings
from lofarexec_ssh import SshSettings

from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.transport import DEFAULT_KILL_GRACE, DEFAULT_REMOTE_PYTHON
from tests.helpers import write_config

ALL = [LocalSettings, MpirunSettings, SrunSettings, SshSettings, ParamikoSettings,
       CmdlineSettings]
REQUIRED = {CmdlineSettings: {"template": "sh -c {command}"}}


def fields(settings_class: type) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(settings_class)}


@pytest.mark.parametrize("settings_class", ALL)
def test_every_backend_shares_the_kill_grace_key(settings_class):
    field = fields(settings_class)["kill_grace"]
    assert field.default == DEFAULT_KILL_GRACE
    assert "0 to 3600" in field.metadata["help"]


@pytest.mark.parametrize("settings_class", [s for s in ALL if s is not LocalSettings])
def test_remote_python_has_one_default(settings_class):
    assert fields(settings_class)["remote_python"].default == DEFAULT_REMOTE_PYTHON


BAD_VALUES = [("kill_grace", -1.0), ("kill_grace", 3601.0), ("alive_interval", -1),
              ("remote_python", " ")]


@pytest.mark.parametrize(("settings_class", "key", "value"), [
    (settings_class, key, value) for settings_class in ALL for key, value in BAD_VALUES
    if key in fields(settings_class)])
def test_the_same_bounds_everywhere(settings_class, key, value):
    with pytest.raises(ValueError, match=f"^{key} "):
        settings_class(**REQUIRED.get(settings_class, {}), **{key: value})


def test_a_bad_shared_value_is_a_config_error_naming_key_section_and_file(tmp_path):
    path = write_config(tmp_path, "[ssh]\nkill_grace = 7200\n", method="ssh")
    config = load_config(path, job_name="t", start_time="now")
    with pytest.raises(ConfigError, match="kill_grace = 7200 is out of range") as caught:
        config.section_settings("ssh", SshSettings)
    assert "[ssh]" in str(caught.value) and str(path) in str(caught.value)

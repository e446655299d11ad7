"""Misspelt sections and keys are errors with a "did you mean"; the original's keys stay valid."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from lofarexec.config.known import KEYS_READ, check_names
from lofarexec.errors import ConfigError
from tests.config.support import check_error, load
from tests.helpers import REPO, write_config
from tests.test_docs import _keys_read_by_code

BACKENDS = ("local", "ssh", "cmdline")


def check(config, **kwargs):
    options = {"backend_sections": BACKENDS}
    options.update(kwargs)
    check_names(config, **options)


@pytest.mark.parametrize(("section", "key", "meant"), [
    ("remote", "job_timout", "job_timeout"),
    ("remote", "max_per_nodes", "max_per_node"),
    ("logging", "logfile", "log_file"),
    ("layout", "job_dir", "job_directory"),
    ("deploy", "engine_path", "engine_ppath"),
    ("cluster", "host", "hosts"),
])
def test_a_misspelt_key_is_an_error_naming_the_closest(tmp_path, section, key, meant):
    config = load(tmp_path, f"[DEFAULT]\nruntime_directory = /r\n[{section}]\n{key} = 3\n")
    with pytest.raises(ConfigError) as excinfo:
        check(config)
    check_error(excinfo, config.path, section, key, f"did you mean {meant}?")


def test_a_misspelt_section_is_an_error_naming_the_closest(tmp_path):
    config = load(tmp_path, "[DEFAULT]\nruntime_directory = /r\n[remtoe]\nmethod = local\n")
    with pytest.raises(ConfigError) as excinfo:
        check(config)
    check_error(excinfo, config.path, "remtoe", None, "unknown section", "did you mean [remote]?")


def test_a_name_like_nothing_lists_the_known_ones(tmp_path):
    config = load(tmp_path, "[remote]\nzzzz = 1\n")
    with pytest.raises(ConfigError) as excinfo:
        check(config)
    check_error(excinfo, config.path, "remote", "zzzz", "known: ", "job_timeout")


def test_backend_recipe_and_data_sections_are_known(tmp_path):
    config = load(tmp_path, "[local]\nanything = 1\n[bbs]\nparset = x\n[max_per_node]\nh1 = 2\n")
    check(config, recipe_sections=("bbs",))
    with pytest.raises(ConfigError, match=r"section \[bbs\].*unknown section"):
        check(config)


def test_keys_a_backend_reads_elsewhere_are_known(tmp_path):
    config = load(tmp_path, "[remote]\ncmdline = ssh {host} {command}\n[docker]\nimage = x\n")
    check(config, fallback_keys={"remote": ["cmdline"], "docker": ["image"]})


def test_the_original_frameworks_keys_are_known_and_said_to_be_ignored(tmp_path, caplog):
    config = load(tmp_path, """\
        [DEFAULT]
        lofarroot = /opt/lofar
        task_files = [%(lofarroot)s/share/pipeline/tasks.cfg]
        [layout]
        job_directory = /r/%(job_name)s
        parset_directory = /r/parsets
        [cluster]
        clusterdesc = %(lofarroot)s/share/cep2.clusterdesc
        [logging]
        log_file = /r/pipeline.log
        xml_stat_file = /r/statistics.xml
        [remote]
        method = local
        globalfs = yes
        [feedback]
        method = none
        """)
    with caplog.at_level(logging.DEBUG, logger="lofarexec.config.known"):
        check(config)
    ignored = [record.getMessage() for record in caplog.records]
    assert any("[remote] globalfs" in line and "ignores it" in line for line in ignored)
    assert any("[logging] xml_stat_file" in line for line in ignored)


def test_the_known_keys_are_exactly_the_keys_the_code_reads():
    """A key added to the code (and to test_docs' CONFIG_KEYS) must be known here too."""
    keys, _sections = _keys_read_by_code()
    read = {(section, key) for section, key in keys if section in KEYS_READ}
    known = {(section, key) for section, names in KEYS_READ.items() for key in names}
    assert known == read


def test_the_shipped_config_passes(tmp_path):
    config = load(tmp_path, (REPO / "recipes" / "pipeline.cfg").read_text())
    check(config)


@pytest.mark.slow
def test_a_recipe_with_a_misspelt_key_stops_before_any_job(tmp_path):
    config = write_config(tmp_path, "[remote]\nmethod = local\njob_timout = 3\n")
    recipe = REPO / "recipes" / "master" / "example_parallel.py"
    result = subprocess.run([sys.executable, str(recipe), "-j", "typo", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Dispatching" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "job_timout" in line]
    assert len(errors) == 1, result.stderr
    assert "section [remote]" in errors[0] and "did you mean job_timeout?" in errors[0]

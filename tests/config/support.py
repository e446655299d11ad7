"""What the pipeline.cfg tests share: writing a file, loading it, checking an error's one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig, load_config
from lofarexec.errors import ConfigError

EXAMPLE = """\
[DEFAULT]
runtime_directory = {root}/pipeline_runtime
recipe_directories = [%(runtime_directory)s/recipes]
working_directory = {root}/scratch
[layout]
job_directory = %(runtime_directory)s/jobs/%(job_name)s
log_directory = %(job_directory)s/logs/%(start_time)s
[deploy]
engine_ppath = /opt/pipeline/lib/python/site-packages:/opt/lofar/lib/python/site-packages
engine_lpath = /opt/pipeline/lib:/opt/lofar/lib
[logging]
log_file = %(runtime_directory)s/jobs/%(job_name)s/logs/%(start_time)s/pipeline.log
[remote]
method = local
max_per_node = 1
"""


def write(folder: Path, text: str, name: str = "pipeline.cfg") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, **kwargs: object) -> PipelineConfig:
    options: dict[str, object] = {"job_name": "job1", "start_time": "2010-10-28T14:14:18"}
    options.update(kwargs)
    return load_config(write(tmp_path, text), **options)  # type: ignore[arg-type]


def check_error(
    excinfo: pytest.ExceptionInfo[ConfigError],
    path: Path | None,
    section: str | None,
    key: str | None,
    *fragments: str,
) -> str:
    """The error is one line naming file, section and key, and contains each fragment."""
    message = str(excinfo.value)
    assert "\n" not in message
    if path is not None:
        assert str(path) in message and excinfo.value.filename == str(path)
    if section is not None:
        assert f"section [{section}]" in message and excinfo.value.section == section
    if key is not None:
        assert f"key '{key}'" in message and excinfo.value.key == key
    for fragment in fragments:
        assert fragment in message
    return message

"""Shared fixtures: pipeline.cfg files, node scripts, the ssh test bed."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig, load_config
from tests.helpers import require_sshd, write_config


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., PipelineConfig]:
    """Build a loaded :class:`PipelineConfig` from extra INI text."""

    def make(text: str = "", *, method: str = "local", job_name: str = "test") -> PipelineConfig:
        path = write_config(tmp_path, text, method=method)
        return load_config(path, job_name=job_name, start_time="2026-01-01T00:00:00")

    return make


@pytest.fixture
def node_script(tmp_path: Path) -> Callable[[str], str]:
    """Write a node script whose ``run`` body is given; returns the command that runs it."""

    def make(body: str, name: str = "testnode") -> str:
        path = tmp_path / f"{name}.py"
        path.write_text(
            "import os, sys, time\n"
            "from lofarpipe.support.lofarnode import LOFARnode\n\n"
            f"class {name}(LOFARnode):\n"
            "    def run(self, *args):\n"
            + textwrap.indent(textwrap.dedent(body), " " * 8)
            + "\n\nif __name__ == '__main__':\n"
            f"    sys.exit({name}(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))\n"
        )
        return f"{sys.executable} {path}"

    return make


@pytest.fixture(autouse=True)
def _clean_lofarexec_logging():
    """Recipes add console/file handlers to the root logger; remove them after each test."""
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture(scope="session")
def ssh_testbed(tmp_path_factory):
    """Four real sshd hosts, node1..node4 on 127.0.0.2-5, shared by the whole session."""
    from lofarexec.testing.sshbed import running_testbed

    require_sshd()
    with running_testbed(tmp_path_factory.mktemp("sshbed"), hosts=4) as bed:
        yield bed

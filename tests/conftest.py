"""Shared fixtures: pipeline.cfg files, node scripts, and process checks."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from lofarexec.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent


def write_config(directory: Path, text: str = "", *, method: str = "local") -> Path:
    """A pipeline.cfg in ``directory`` with a job directory under it, plus ``text``.

    A section that ``text`` defines replaces the base one of that name.
    """
    base = {
        "DEFAULT": f"runtime_directory = {directory}/runtime",
        "layout": "job_directory = %(runtime_directory)s/jobs/%(job_name)s",
        "deploy": f"engine_ppath = {REPO}",
        "remote": f"method = {method}",
    }
    extra = textwrap.dedent(text)
    kept = [f"[{name}]\n{body}\n" for name, body in base.items() if f"[{name}]" not in extra]
    path = directory / "pipeline.cfg"
    path.write_text("".join(kept) + extra)
    return path


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


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie (``kill -0`` says yes to zombies)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (a zombie counts), on its pidfd: a sent SIGKILL takes
    effect when the process is next scheduled, which on a loaded machine is not at once."""
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return not process_alive(pid)


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


def require_sshd() -> None:
    """Skip (or, under CI, fail) when the ssh test bed cannot run here."""
    from lofarexec.testing.sshbed import SSHD

    problem = None
    if os.geteuid() != 0:
        problem = "the sshd test hosts need root"
    elif not SSHD.exists():
        problem = "no /usr/sbin/sshd: run `bash scripts/test`, which installs openssh-server"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def ssh_testbed(tmp_path_factory):
    """Four real sshd hosts, node1..node4 on 127.0.0.2-5, shared by the whole session."""
    from lofarexec.testing.sshbed import running_testbed

    require_sshd()
    with running_testbed(tmp_path_factory.mktemp("sshbed"), hosts=4) as bed:
        yield bed

"""Throwaway installed distributions for plugin tests: a ``.dist-info`` and a module, put in a
folder that the test then puts on ``sys.path`` (as an installer would leave them)."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_BACKEND = '''\
import dataclasses
from lofarexec import Backend, Outcome, hookimpl

@dataclasses.dataclass(frozen=True)
class Settings:
    """[{name}] section."""
    answer: int = dataclasses.field(default=42, metadata={{"help": "what every job returns"}})
    label: str = dataclasses.field(default="", metadata={{"help": "a word for the logs"}})

class TheBackend(Backend):
    """Ends every job at once with [{name}] answer."""
    name = "{name}"
    Settings = Settings

    def start(self, request, report):
        report(Outcome(self.settings.answer))
        return self

    def kill(self):
        pass

@hookimpl
def lofarexec_register_backends(registry):
    registry.add(TheBackend)
'''


def install(site: Path, project: str, version: str, module: str, source: str,
            entry_point: str | None = None) -> None:
    """Write distribution ``project`` ``version`` into ``site``: ``module``.py holding ``source``
    and one entry point of the ``lofarexec`` group (named ``entry_point``, else ``module``)."""
    site.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{project.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
    (dist_info / "entry_points.txt").write_text(
        f"[lofarexec]\n{entry_point or module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def good_backend(name: str) -> str:
    """The source of a plugin module registering a working backend called ``name``."""
    return GOOD_BACKEND.format(name=name)

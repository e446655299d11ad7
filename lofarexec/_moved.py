"""Old module paths (before the subpackages) kept as aliases for one release.

Why: recipes and notes written against 0.1 import e.g. ``lofarexec.datamap``. Importing an old
path gives the module at its new place, with a :class:`DeprecationWarning` naming it; the
alias is the very same module object, so nothing is duplicated. Removed in 0.3.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.machinery

#: old path -> new path (modules that shipped recipes or the docs of 0.1 named)
MOVED: dict[str, str] = {
    "lofarexec.agent_client": "lofarexec.transport.agent",
    "lofarexec.agent_frames": "lofarexec.transport.agent_frames",
    "lofarexec.datamap": "lofarexec.mapfiles.parset",
    "lofarexec.datamaps": "lofarexec.mapfiles.datamaps",
    "lofarexec.exchange": "lofarexec.channel.exchange",
    "lofarexec.hostlist": "lofarexec.config.hostlist",
    "lofarexec.journal": "lofarexec.run.journal",
    "lofarexec.logserver": "lofarexec.channel.logserver",
    "lofarexec.noderecords": "lofarexec.channel.records",
    "lofarexec.process": "lofarexec.transport.process",
    "lofarexec.protocol": "lofarexec.channel.protocol",
    "lofarexec.remote": "lofarexec.transport.wrapper",
    "lofarexec.report": "lofarexec.run.outputs",
    "lofarexec.runner": "lofarexec.run.runner",
    "lofarexec.scheduler": "lofarexec.run.scheduler",
    "lofarexec.spawn": "lofarexec.transport.execenv",
    "lofarexec.wakeup": "lofarexec.transport.wakeup",
}


class _AliasLoader:
    """Gives the module at its new path. Not an ``importlib.abc`` subclass: the import system
    needs only the methods, and ``importlib.abc`` imports ``importlib.resources`` (~9 ms at the
    start of every recipe and node in a normal install: issue 17)."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new_name}; the old path goes in 0.3",
                      DeprecationWarning, stacklevel=4)
        import importlib  # here, not above: every node imports this module (issue 17)

        module = importlib.import_module(self.new_name)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


class MovedModuleFinder:
    """Finds the old paths of :data:`MOVED`, and nothing else (a meta path finder; not an
    ``importlib.abc`` subclass, for :class:`_AliasLoader`'s reason)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new_name = MOVED.get(fullname)
        if new_name is None:
            return None
        import importlib.machinery  # only for an old path: every node imports this module

        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new_name))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (called by ``import lofarexec``)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())

"""``lofarpipe.support.lofarexceptions``: the framework's exception names on lofarexec's tree.

Where lofarexec has an error that means the same thing, the name is that error: recipes that
catch ``DataMapError`` or ``PipelineQuit`` catch what lofarexec raises. ``PipelineException``
is :class:`~lofarexec.errors.LofarexecError`, the base of them all, as it was the framework's
base. The names lofarexec never raises itself are kept as subclasses of it, for recipes that
raise or catch them.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from lofarexec.errors import DataMapError, PipelineQuit
from lofarexec.errors import LofarexecError as PipelineException

__all__ = [
    "ClusterError",
    "DataMapError",
    "ExecutableMissing",
    "LofarBindingsMissing",
    "PipelineException",
    "PipelineQuit",
    "PipelineReceipeNotFound",
    "PipelineRecipeFailed",
]


class ExecutableMissing(PipelineException):
    """A node script did not find the executable it was asked to run."""


class PipelineRecipeFailed(PipelineException):
    """A recipe run from another recipe did not succeed."""


class PipelineReceipeNotFound(PipelineException):
    """No recipe of the name asked for (the framework's spelling)."""


class ClusterError(PipelineException):
    """The cluster description or a host of it is not usable."""


class LofarBindingsMissing(PipelineException, ImportError):
    """A recipe imported something that needs LOFAR's own Python bindings (``lofar.*``).

    Raised at import, naming the module and what to install; ``str()`` is that one line.
    """

    def __init__(self, what: str, needs: str) -> None:
        super().__init__(
            f"{what} is not provided by lofarexec: it needs {needs}, LOFAR's C++ bindings; "
            f"install the LOFAR software (KERN package 'lofar') and use {needs} directly")
        self.what = what
        self.needs = needs


def missing_bindings(what: str, needs: str) -> LofarBindingsMissing:
    """The error for ``what``; an uncaught one is printed as its one line, not a traceback.

    Called where a module needing the bindings is imported: the recipe or node script that
    imports it then ends with that line and exit status 1.
    """
    previous = sys.excepthook
    if not getattr(previous, "lofarexec_one_line", False):
        def one_line(kind: type[BaseException], value: BaseException,
                     traceback: TracebackType | None) -> None:
            if isinstance(value, LofarBindingsMissing):
                program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
                print(f"{program}: {value}", file=sys.stderr)
            else:
                previous(kind, value, traceback)

        one_line.lofarexec_one_line = True  # type: ignore[attr-defined]
        sys.excepthook = one_line
    return LofarBindingsMissing(what, needs)

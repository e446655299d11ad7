"""``lofarpipe.support.lofarexceptions``: the original exception names, mapped onto lofarexec's."""

from lofarexec.errors import LofarexecError as PipelineException
from lofarexec.errors import PipelineQuit

__all__ = ["PipelineException", "PipelineQuit"]

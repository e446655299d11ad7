"""``lofarpipe.support.remotecommand``: ``ComputeJob`` and ``RemoteCommandRecipeMixIn``."""

from lofarexec.job import ComputeJob
from lofarexec.recipe import RemoteCommandRecipeMixIn

__all__ = ["ComputeJob", "RemoteCommandRecipeMixIn"]

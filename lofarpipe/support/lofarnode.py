"""``from lofarpipe.support.lofarnode import LOFARnode`` (the seed's node-script import)."""

from lofarexec.node import LOFARnode

__all__ = ["LOFARnode"]

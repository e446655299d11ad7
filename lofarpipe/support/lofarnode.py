"""``from lofarpipe.support.lofarnode import LOFARnode`` (the seed's node-script import), and
the later framework's ``LOFARnodeTCP`` (arguments fetched over the job channel)."""

from lofarexec.node import LOFARnode, LOFARnodeTCP

__all__ = ["LOFARnode", "LOFARnodeTCP"]

import sys
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.remotecommand import RemoteCommandRecipeMixIn
from lofarpipe.support.remotecommand import ComputeJob

# The seed's example recipe, unchanged but for where ``hostname`` comes from (the seed leaves
# it undefined): the first positional argument, or "localhost".


class example_parallel(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super(example_parallel, self).go()
        hostname = (self.inputs.get("args") or ["localhost"])[0]
        node_command = "python %s" % (self.__file__.replace("master", "nodes"))
        job = ComputeJob(hostname, node_command, arguments=["example_argument"])
        self._schedule_jobs([job])
        if self.error.isSet():
            return 1
        else:
            return 0


if __name__ == '__main__':
    sys.exit(example_parallel().main())

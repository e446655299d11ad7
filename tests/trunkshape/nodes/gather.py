"""The node of the gather pair (later framework's shape): started as ``<command> <job id>
<host> <port>``, it fetches its typed arguments and hands its target back in ``outputs``."""

import os
import shutil
import socket
import sys

from lofarpipe.support.lofarnode import LOFARnodeTCP
from lofarpipe.support.pipelinelogging import log_time
from lofarpipe.support.utilities import create_directory


class gather(LOFARnodeTCP):
    def run(self, source, target, keep, environment):
        with log_time(self.logger):
            if not os.path.exists(source):
                self.logger.error("no such file: %s", source)
                return 1
            create_directory(os.path.dirname(target))
            (shutil.copy2 if keep else shutil.move)(source, target)
        self.logger.info("gathered %s (keep=%r, LOFARROOT=%s, on %s)", target, keep,
                         environment.get("LOFARROOT"), os.environ.get("LOFAREXEC_HOST",
                                                                      socket.gethostname()))
        self.outputs["target"] = target
        return 0


if __name__ == "__main__":
    jobid, jobhost, jobport = sys.argv[1:4]
    sys.exit(gather(jobid, jobhost, jobport).run_with_stored_arguments())

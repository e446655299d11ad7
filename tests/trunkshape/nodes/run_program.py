"""The node of the run_program pair (later framework's shape): runs the program with the
framework's utilities (log4cplus catcher, segfault retry, timing) and says ``ok`` in outputs."""

import os
import sys
from subprocess import CalledProcessError

from lofarpipe.support.lofarnode import LOFARnodeTCP
from lofarpipe.support.pipelinelogging import CatchLog4CPlus, log_time
from lofarpipe.support.utilities import catch_segfaults, create_directory


class run_program(LOFARnodeTCP):
    def run(self, infile, executable, arguments, work_dir, environment):
        self.environment.update(environment)
        with log_time(self.logger):
            if not os.path.exists(infile):
                self.logger.error("Dataset %s does not exist", infile)
                return 1
            create_directory(work_dir)
            cmd = [executable] + [arg.replace("{infile}", infile) for arg in arguments]
            try:
                with CatchLog4CPlus(work_dir, self.logger.name + "." + os.path.basename(infile),
                                    os.path.basename(executable)) as logger:
                    catch_segfaults(cmd, work_dir, self.environment, logger)
            except CalledProcessError as err:
                self.logger.error(str(err))
                return 1
        self.outputs["ok"] = True
        return 0


if __name__ == "__main__":
    jobid, jobhost, jobport = sys.argv[1:4]
    sys.exit(run_program(jobid, jobhost, jobport).run_with_stored_arguments())

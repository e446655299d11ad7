"""Node of ``executable_args``: run the executable over one file, report the product."""

import os
import subprocess
import sys

from lofarpipe.support.lofarnode import LOFARnodeTCP


class executable_args(LOFARnodeTCP):
    def run(self, executable, arguments, infile, outfile):
        argv = [executable] + [a.replace("{input}", infile).replace("{output}", outfile)
                               for a in arguments]
        self.logger.info("running %s", " ".join(argv))
        try:
            finished = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, errors="replace")
        except OSError as exc:
            self.logger.error("cannot run %s: %s", executable, exc)
            return 1
        for line in finished.stderr.splitlines()[-20:]:
            self.logger.warning("%s: %s", os.path.basename(executable), line)
        if finished.returncode != 0:
            self.logger.error("%s failed with status %d on %s", executable,
                              finished.returncode, infile)
            return finished.returncode
        if not os.path.exists(outfile):
            self.logger.error("%s made no %s", executable, outfile)
            return 1
        self.outputs["output_file"] = outfile
        return 0


if __name__ == "__main__":
    sys.exit(executable_args(sys.argv[1], sys.argv[2], sys.argv[3]).run_with_stored_arguments())

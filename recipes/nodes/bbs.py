"""Worker of the ``bbs`` recipe: one per host, in step with the controller on the master."""

import sys

from lofarpipe.support.lofarnode import LOFARnodeTCP

STEP_TIMEOUT = 600.0


class bbs(LOFARnodeTCP):
    def run(self, index, steps, fail_at_step):
        self.publish("ready/%d" % index, True)
        for step in range(steps):
            solution = self.wait_for("step/%d" % step, timeout=STEP_TIMEOUT)
            if step == fail_at_step:
                self.logger.error("worker %d: cannot solve step %d", index, step)
                return 1
            part = solution * (index + 1) / 2.0  # this worker's share of the next solution
            self.logger.info("worker %d: step %d part %.6f", index, step, part)
            self.publish("part/%d/%d" % (step, index), part)
        self.outputs["final"] = self.wait_for("done", timeout=STEP_TIMEOUT)
        return 0


if __name__ == "__main__":
    sys.exit(bbs(sys.argv[1], sys.argv[2], sys.argv[3]).run_with_stored_arguments())

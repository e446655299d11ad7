"""Synchronised processes, in the shape of the original framework's ``bbs`` recipe.

A controller on the master and one worker per host start together. The workers announce
themselves; for each step the controller publishes the current solution, every worker answers
with its part, and the controller combines the parts into the next solution. Values travel over
the authenticated job channel (``publish``/``wait_for`` on the nodes, the recipe's ``_board``
here). Any one failing stops all the others at once: a worker's failure kills the other workers
(``fail_fast``), and a controller's failure kills every worker.

Usage: ``python bbs.py -j JOB [--steps N] HOST [HOST ...]``
"""

import sys
import threading

from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

#: Seconds a controller waits for the workers' values before it gives up on the run.
CONTROL_TIMEOUT = 600.0


class bbs(BaseRecipe, RemoteCommandRecipeMixIn):
    """Controller plus one worker per host, exchanging values each step; all stop if one fails."""

    def option_parser(self):
        parser = super().option_parser()
        parser.add_argument("--steps", type=int, default=3, help="iterations (default 3)")
        parser.add_argument("--python", default="python", help="interpreter on the hosts")
        parser.add_argument("--fail-host", help="testing: the worker on this host fails at step 1")
        return parser

    def go(self):
        super().go()
        hosts = self.inputs["args"] or ["localhost"]
        steps = self.inputs["steps"]
        node = "%s %s" % (self.inputs["python"], self.__file__.replace("master", "nodes"))
        fail_at = {self.inputs.get("fail_host"): 1}  # testing: that host's worker fails
        jobs = [ComputeJob(host, node, [index, steps, fail_at.get(host, -1)], store_arguments=True)
                for index, host in enumerate(hosts)]
        if self.inputs.get("dry_run"):  # no worker starts: nothing to control
            self._schedule_jobs(jobs, fail_fast=True)
            return 0
        controller = threading.Thread(target=self._control, args=(len(jobs), steps), daemon=True)
        controller.start()
        self._schedule_jobs(jobs, fail_fast=True)
        controller.join(CONTROL_TIMEOUT)
        return 1 if self.error.is_set() or "solution" not in self.outputs else 0

    def _control(self, workers, steps):
        try:
            board = self._board(timeout=CONTROL_TIMEOUT)
            for worker in range(workers):
                board.get("ready/%d" % worker, timeout=CONTROL_TIMEOUT)
            solution = 1.0
            for step in range(steps):
                board.put("step/%d" % step, solution)
                parts = [board.get("part/%d/%d" % (step, worker), timeout=CONTROL_TIMEOUT)
                         for worker in range(workers)]
                solution = sum(parts) / workers
                self.logger.info("step %d: solution %.6f from %d workers", step, solution, workers)
            board.put("done", solution)
            self.outputs["solution"] = solution
        except EOFError:
            self.logger.error("controller stopped: the workers ended before the last step")
        except Exception as exc:  # the controller failing must stop every worker at once
            self.logger.error("controller failed (%s); stopping all workers", exc)
            self.error.set()
            self._stop_jobs("the controller failed")


if __name__ == "__main__":
    sys.exit(bbs().main())

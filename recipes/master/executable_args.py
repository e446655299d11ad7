"""executable_args: run an executable over each file of a mapfile, on the host that holds it.

The later LOFAR framework's general-purpose step, in its shape: for every entry of the input
mapfile that is not skipped, a job runs on the entry's host (data locality: never moved), at
most ``--max-per-node`` at once per host; the node runs the executable with the arguments given
(``{input}`` and ``{output}`` are replaced by the entry's file and the product's path) and
reports the product back over the job channel. The recipe writes the output mapfile (a
DataMap, JSON) in the input's order, with ``skip`` set for every entry whose job failed or
whose input was already skipped, so the next step goes on with what succeeded::

    python executable_args.py -j JOB --executable /opt/bin/dppp \\
        --arg 'msin={input}' --arg 'msout={output}' --max-per-node 4 input.mapfile

The output mapfile goes to ``--mapfile-out`` (default
``<job_directory>/mapfiles/executable_args.mapfile``) and its path into ``outputs['mapfile']``.
The recipe ends with status 1 when any job failed. A dry run (``-n``) lists the jobs, writes
nothing and ends with status 0.
"""

from __future__ import annotations

import os
import sys

from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn
from lofarexec.mapfiles.datamaps import DataMap, DataProduct, load_map


class executable_args(BaseRecipe, RemoteCommandRecipeMixIn):
    """Run an executable over every file of a mapfile, on the host holding it."""

    def option_parser(self):
        parser = super().option_parser()
        parser.add_argument("--executable", required=True, help="program to run on the hosts")
        parser.add_argument("--arg", action="append", dest="exec_args", default=None,
                            help="one argument of the executable; {input} and {output} are "
                                 "replaced (repeat it; default: {input} {output})")
        parser.add_argument("--max-per-node", type=int, default=None,
                            help="jobs at once per host (default: pipeline.cfg)")
        parser.add_argument("--output-suffix", default=".out",
                            help="appended to the input's name to make the output's")
        parser.add_argument("--mapfile-out", help="where to write the output mapfile")
        parser.add_argument("--python", default="python3", help="interpreter on the hosts")
        return parser

    def go(self):
        super().go()
        if len(self.inputs["args"]) != 1:
            self.logger.error("give exactly one input mapfile")
            return 1
        inputs = load_map(self.inputs["args"][0])
        arguments = self.inputs.get("exec_args") or ["{input}", "{output}"]
        node = "%s %s" % (self.inputs["python"], self.__file__.replace("master", "nodes"))
        jobs, positions = [], []
        for position, entry in enumerate(inputs):
            if entry.skip:
                continue
            output = entry.file + self.inputs["output_suffix"]
            jobs.append(ComputeJob(entry.host, node, [self.inputs["executable"], arguments,
                                                      entry.file, output], store_arguments=True))
            positions.append(position)
        self._schedule_jobs(jobs, max_per_node=self.inputs.get("max_per_node"))
        if self.inputs.get("dry_run"):  # nothing ran: no output mapfile, and no failure
            self.logger.info("dry run: no output mapfile written (%d jobs would run)", len(jobs))
            return 0
        return self._write_output_map(inputs, dict(zip(positions, jobs)))

    def _write_output_map(self, inputs, jobs_at):
        products, failed = [], 0
        for position, entry in enumerate(inputs):
            job = jobs_at.get(position)
            ok = job is not None and job.results.get("state") == "succeeded"
            failed += job is not None and not ok
            output = (job.results.get("output_file") if ok else None) or \
                entry.file + self.inputs["output_suffix"]
            products.append(DataProduct(entry.host, output, skip=not ok))
        target = self.inputs.get("mapfile_out") or os.path.join(
            self.config.job_directory, "mapfiles", "executable_args.mapfile")
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        DataMap(products).save(target)
        self.outputs["mapfile"] = target
        if failed:
            self.logger.error("%d of %d jobs failed; their products are marked skip in %s",
                              failed, len(jobs_at), target)
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(executable_args().main())

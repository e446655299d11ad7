"""A master in the later framework's shape (written here, not the trunk's executable_args):
runs a program on every file of a map, with a list of arguments, an environment update and a
step name; writes a map of the files whose run succeeded."""

import os
import sys

import lofarpipe.support.lofaringredient as ingredient
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.data_map import DataMap, DataProduct
from lofarpipe.support.remotecommand import ComputeJob, RemoteCommandRecipeMixIn


class run_program(BaseRecipe, RemoteCommandRecipeMixIn):
    inputs = {
        "executable": ingredient.ExecField("--executable", help="the program to run"),
        "arguments": ingredient.ListField("-a", "--arguments", default=[],
                                          help="its arguments; {infile} is the map's file"),
        "mapfile_in": ingredient.FileField("--mapfile-in", help="the files to run it on"),
        "stepname": ingredient.StringField("--stepname", default="step",
                                           help="names the map written"),
        "nthreads": ingredient.IntField("--nthreads", default=2,
                                        help="cores per run (its OMP_NUM_THREADS)"),
        "max_per_node": ingredient.IntField("--max_per_node", default=0,
                                            help="jobs at a time per host (0: the config's)"),
        "environment": ingredient.DictField("--environment", optional=True,
                                            help="variables to set for the program"),
    }
    outputs = {"mapfile": ingredient.FileField(help="the files whose run succeeded")}

    def go(self):
        if "environment" in self.inputs:
            self.environment.update(self.inputs["environment"])
        super().go()
        data = DataMap.load(self.inputs["mapfile_in"])
        data.iterator = DataMap.SkipIterator
        work_dir = os.path.join(self.inputs["working_directory"], self.inputs["job_name"])
        folder, name = os.path.split(self.__file__)
        command = "%s %s" % (sys.executable, os.path.join(os.path.dirname(folder), "nodes", name))
        jobs = [ComputeJob(item.host, command,
                           [item.file, self.inputs["executable"], self.inputs["arguments"],
                            work_dir, self.environment],
                           resources={"cores": self.inputs["nthreads"]})
                for item in data]
        self._schedule_jobs(jobs, self.inputs["max_per_node"] or None)
        done = DataMap([DataProduct(job.host, item.file, not job.results.get("ok", False))
                        for job, item in zip(jobs, data)])
        mapfile = os.path.join(self.config.get("layout", "job_directory"), "mapfiles",
                               self.inputs["stepname"] + ".mapfile")
        self._store_data_map(mapfile, done, "files the program ran on")
        self.outputs["mapfile"] = mapfile
        return 1 if self.error.is_set() and all(item.skip for item in done) else 0


if __name__ == "__main__":
    sys.exit(run_program().main())

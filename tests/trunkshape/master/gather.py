"""A master in the later framework's shape (written here, not the trunk's copier): gathers each
file of a source map to the path and host of a target map, through typed inputs, stored
arguments and data maps in and out; a failed job's target is skipped in the map it writes."""

import os
import sys

import lofarpipe.support.lofaringredient as ingredient
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.data_map import DataMap
from lofarpipe.support.remotecommand import ComputeJob, RemoteCommandRecipeMixIn


class gather(BaseRecipe, RemoteCommandRecipeMixIn):
    inputs = {
        "sources": ingredient.FileField("--sources", help="map of the files to gather"),
        "targets": ingredient.StringField("--targets", help="map of where each one goes"),
        "keep": ingredient.BoolField("--keep", default=True, help="copy rather than move"),
        "mapfile": ingredient.StringField("--mapfile", help="map of the gathered files"),
    }
    outputs = {"mapfile": ingredient.FileField(help="the gathered files, failed ones skipped")}

    def go(self):
        super().go()
        sources = DataMap.load(self.inputs["sources"])
        targets = DataMap.load(self.inputs["targets"])
        if len(sources) != len(targets):
            self.logger.error("%d sources but %d targets", len(sources), len(targets))
            return 1
        folder, name = os.path.split(self.__file__)
        node = os.path.join(os.path.dirname(folder), "nodes", name)
        jobs = [ComputeJob(target.host, "%s %s" % (sys.executable, node),
                           [source.file, target.file, self.inputs["keep"], self.environment],
                           resources={"cores": 1})
                for source, target in zip(sources, targets)]
        self._schedule_jobs(jobs)
        for job, target in zip(jobs, targets):
            target.skip = job.results.get("target") != target.file
        if all(target.skip for target in targets):
            self.logger.error("no file was gathered")
            return 1
        self._store_data_map(self.inputs["mapfile"], targets, "gathered files")
        self.outputs["mapfile"] = self.inputs["mapfile"]
        return 0


if __name__ == "__main__":
    sys.exit(gather().main())

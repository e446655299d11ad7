"""datamapper, node side: glob a pattern on this host's own disks and report what matched.

Started by ``master/datamapper.py`` as ``datamapper.py LOGHOST LOGPORT HOST PATTERN FINDINGS``.
The sorted matches (``**`` recursive; files and folders alike, a Measurement Set is a folder) are
written as ``{"host": HOST, "pattern": PATTERN, "files": [...]}`` to FINDINGS, a file under the
job directory that the master reads after the job ends. It is written under a temporary name
and renamed, so the master never reads half of it. No match is not an error: the list is empty.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from lofarexec.node import LOFARnode


class datamapper(LOFARnode):
    """Find this host's files matching a pattern; write them where the master looks."""

    def run(self, *args: str) -> int:
        """Glob PATTERN here and write the result to FINDINGS; 1 if it cannot be written."""
        if len(args) != 3:
            self.logger.error("expected the arguments HOST PATTERN FINDINGS, got %r", args)
            return 1
        host, pattern, findings = args
        files = sorted(glob.glob(pattern, recursive=True))
        self.logger.info("%d match%s for %s", len(files), "" if len(files) == 1 else "es",
                         pattern)
        temporary = f"{findings}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as stream:
                json.dump({"host": host, "pattern": pattern, "files": files}, stream)
            os.replace(temporary, findings)
        except OSError as exc:
            self.logger.error("cannot write the findings to %s: %s", findings,
                              exc.strerror or exc)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(datamapper(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))

"""storagemapper: the host of each file read from its path, and the mapfile written; no jobs.

On the LOFAR cluster a storage node's disks are mounted on the control node as
``/net/SUBCLUSTER/NODE/...``: the path itself says which host holds the file, and what the path
is on that host. So ``/net/sub3/lse007/data/L1_SB000.MS`` maps to host ``lse007``, file
``/data/L1_SB000.MS``. The host is the path's component number ``--component`` when it is split
at ``/`` (default 3, as the original recipe: the empty string before the first ``/`` is 0)::

    python storagemapper.py -j JOB [--component 3] [--mapfile FILE] PATHLIST [PATHLIST...]

Each PATHLIST is a file with one absolute path per line (blank lines and ``#`` comments are
skipped). The mapfile goes to ``--mapfile`` (default
``<job_directory>/mapfiles/storagemapper.mapfile``), hosts in order of first appearance, and
its path into ``outputs['mapfile']``. A path without that component, or whose component is not
a host name, is a DataMapError naming the list file and line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lofarexec.errors import DataMapError
from lofarexec.mapfiles.parset import is_host_name, store_data_map
from lofarexec.recipe import BaseRecipe

DEFAULT_COMPONENT = 3


class storagemapper(BaseRecipe):
    """Map each listed path to the storage node named in it and write the mapfile."""

    def option_parser(self) -> Any:
        """The base options, plus which path component is the host and where the mapfile goes."""
        parser = super().option_parser()
        parser.add_argument("--component", type=int, default=DEFAULT_COMPONENT,
                            help="index of the host in the path split at '/' (default "
                            f"{DEFAULT_COMPONENT}: /net/sub3/HOST/...)")
        parser.add_argument("--mapfile", help="mapfile to write (replaced if it exists); "
                            "default <job_directory>/mapfiles/storagemapper.mapfile")
        return parser

    def go(self) -> int:
        """Read the path lists, group the paths by host, write the mapfile."""
        super().go()
        component = int(self.inputs["component"])
        if component < 1:
            raise ValueError(f"--component must be 1 or more, not {component}")
        lists = self.inputs.get("args") or []
        if not lists:
            raise ValueError("no path list: give the file(s) listing the paths as arguments")
        held: dict[str, list[str]] = {}
        for list_file in lists:
            for host, path in read_path_list(list_file, component):
                held.setdefault(host, []).append(path)
        default = self.config.job_directory / "mapfiles" / "storagemapper.mapfile"
        mapfile = Path(self.inputs.get("mapfile") or default).absolute()
        if self.inputs.get("dry_run"):
            self.logger.info("dry run: %d hosts found, no mapfile written to %s",
                             len(held), mapfile)
            return 0
        store_data_map(mapfile, held)
        self.outputs["mapfile"] = str(mapfile)
        total = sum(len(paths) for paths in held.values())
        self.logger.info("%d files on %d hosts written to %s", total, len(held), mapfile)
        return 0


def read_path_list(list_file: str, component: int) -> list[tuple[str, str]]:
    """``(host, path on that host)`` for every path listed in ``list_file``, in order."""
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataMapError(f"cannot read path list: {getattr(exc, 'strerror', None) or exc}",
                           filename=list_file) from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        path = line.strip()
        if path and not path.startswith("#"):
            pairs.append(split_storage_path(path, component, list_file, number))
    return pairs


def split_storage_path(path: str, component: int, list_file: str, line: int) -> tuple[str, str]:
    """``/net/sub3/lse007/data/x.MS`` -> ``("lse007", "/data/x.MS")`` for component 3."""
    if not path.startswith("/"):
        raise DataMapError(f"{path!r} is not an absolute path", filename=list_file, line=line)
    parts = path.split("/")
    if len(parts) <= component + 1:
        raise DataMapError(f"{path!r} has no file after path component {component} (the host)",
                           filename=list_file, line=line)
    host = parts[component]
    if not is_host_name(host):
        raise DataMapError(f"component {component} of {path!r}, {host!r}, is not a host name",
                           filename=list_file, line=line)
    return host, "/" + "/".join(parts[component + 1:])


if __name__ == "__main__":
    sys.exit(storagemapper().main())

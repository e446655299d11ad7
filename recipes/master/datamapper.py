"""datamapper: ask every host which data files it holds, and write the mapfile.

Which host holds which file decides where each later job runs, and only the host itself can say
what is on its own disks. So this recipe starts ``nodes/datamapper.py`` on every host it is
given; each globs a pattern there and writes what matched, as JSON, to its own file under the
job directory (``<job_directory>/datamapper/NNNN-HOST.json``); the recipe then reads those
files and writes the parset mapfile::

    python datamapper.py -j JOB --pattern '/data/L123/*.MS' lse001 lse002 lse003
    python datamapper.py -j JOB --pattern '*.MS' lse001:/data/a lse002:/data/b
    python datamapper.py -j JOB --hosts lse001,lse002 --pattern '/data/{host}/*.MS'

Hosts come as positional arguments and/or ``--hosts`` (comma-separated). A host may carry a
path, ``HOST:/PATH``: a folder, in which the (relative) ``--pattern`` is globbed (``*`` when no
pattern is given), or a glob of its own. A host without a path needs an absolute
``--pattern``, so hosts given with folders next to such hosts need globs of their own.
``{host}`` in a pattern or path becomes the host's name. The glob is ``**``-recursive and
sorted. A host with no match gets an empty list.

The mapfile goes to ``--mapfile`` (default ``<job_directory>/mapfiles/datamapper.mapfile``) and
its path into ``outputs['mapfile']``. A host whose job fails is named in the log and in
``outputs['failed_hosts']``, left out of the mapfile (which is still written for the others)
and makes the recipe end with status 1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from lofarexec.errors import LofarexecError
from lofarexec.job import ComputeJob
from lofarexec.mapfiles.parset import is_host_name, store_data_map
from lofarexec.recipe import BaseRecipe, RemoteCommandRecipeMixIn

_GLOB_CHARACTERS = re.compile(r"[*?\[]")
_HOST_AND_PATH = re.compile(r"(?P<host>[^/]+?):(?P<path>/.*)")


class HostFailed(Exception):
    """A host could not report what it holds; the message says why, in one line."""


class datamapper(BaseRecipe, RemoteCommandRecipeMixIn):
    """Glob a pattern on every host's own disks and write a mapfile of what each host holds."""

    def option_parser(self) -> Any:
        """The base options, plus where to look, which hosts, and where the mapfile goes."""
        parser = super().option_parser()
        parser.add_argument("--pattern", help="glob to match on each host; absolute unless the "
                            "host is given as HOST:/FOLDER; '{host}' becomes the host's name")
        parser.add_argument("--hosts", help="comma-separated hosts, each HOST or HOST:/PATH "
                            "(added to the positional arguments)")
        parser.add_argument("--mapfile", help="mapfile to write (replaced if it exists); "
                            "default <job_directory>/mapfiles/datamapper.mapfile")
        parser.add_argument("--python", default="python3",
                            help="interpreter that runs the node script on the hosts")
        return parser

    def go(self) -> int:
        """Dispatch one search per host, collect the findings, write the mapfile."""
        super().go()
        searches = self._searches()
        default = self.config.job_directory / "mapfiles" / "datamapper.mapfile"
        mapfile = Path(self.inputs.get("mapfile") or default).absolute()
        findings = self.config.job_directory / "datamapper"
        files = [findings / f"{index:04d}-{host}.json" for index, (host, _) in enumerate(searches)]
        _prepare_findings(findings, files)
        jobs = [self._job(host, pattern, path) for (host, pattern), path in zip(searches, files)]
        self._schedule_jobs(jobs)
        if self.inputs.get("dry_run"):
            self.logger.info("dry run: no hosts searched, no mapfile written")
            return 0
        held, failed = self._collect(jobs, files)
        store_data_map(mapfile, held)
        self.outputs["mapfile"] = str(mapfile)
        total = sum(len(paths) for paths in held.values())
        self.logger.info("%d files on %d hosts written to %s", total, len(held), mapfile)
        if failed:
            self.outputs["failed_hosts"] = failed
            self.logger.error("no data map for %s: left out of %s", ", ".join(failed), mapfile)
            return 1
        return 0

    def _searches(self) -> list[tuple[str, str]]:
        """``(host, absolute glob)`` for every host given, in order; ValueError when unusable."""
        given = list(self.inputs.get("args") or [])
        given += [item.strip() for item in (self.inputs.get("hosts") or "").split(",")
                  if item.strip()]
        if not given:
            raise ValueError("no hosts: give them as arguments or with --hosts")
        searches: list[tuple[str, str]] = []
        for spec in given:
            host, pattern = self._search(spec)
            if host in (known for known, _ in searches):
                raise ValueError(f"host {host!r} is given twice")
            searches.append((host, pattern))
        return searches

    def _search(self, spec: str) -> tuple[str, str]:
        """One ``HOST`` or ``HOST:/PATH`` as ``(host, absolute glob)``."""
        match = _HOST_AND_PATH.fullmatch(spec)
        host, path = (match["host"], match["path"]) if match else (spec, None)
        if not is_host_name(host):
            raise ValueError(f"{host!r} is not a host name")
        pattern = self.inputs.get("pattern")
        if path is not None and _GLOB_CHARACTERS.search(path):
            pattern = path  # the host's own glob
        elif path is not None:  # a folder: the pattern is globbed inside it
            if pattern is not None and os.path.isabs(pattern):
                raise ValueError(f"{spec}: give a relative --pattern to glob in {path}, "
                                 f"not {pattern!r}")
            pattern = os.path.join(path, pattern or "*")
        if pattern is None:
            raise ValueError(f"no pattern for host {host!r}: give --pattern, or {host}:/PATH")
        pattern = pattern.replace("{host}", host)
        if not os.path.isabs(pattern):
            raise ValueError(f"pattern {pattern!r} for host {host!r} is not absolute; the node "
                             "script's working folder is not defined")
        return host, pattern

    def _job(self, host: str, pattern: str, findings: Path) -> ComputeJob:
        node_script = self.__file__.replace("master", "nodes")
        command = f"{self.inputs['python']} {shlex.quote(node_script)}"
        return ComputeJob(host, command, arguments=[host, pattern, findings])

    def _collect(
        self, jobs: list[ComputeJob], files: list[Path]
    ) -> tuple[dict[str, list[str]], list[str]]:
        """What each host holds (hosts in order), and the hosts that could not say."""
        held: dict[str, list[str]] = {}
        failed: list[str] = []
        for job, path in zip(jobs, files):
            host = str(job.host)
            try:
                held[host] = _read_findings(job, path)
            except HostFailed as exc:
                failed.append(host)
                self.logger.error("datamapper on %s failed: %s", host, exc)
        return held, failed


def _prepare_findings(folder: Path, files: list[Path]) -> None:
    """Create the findings folder and remove findings an earlier run left there.

    An old file must not pass for this run's answer from a host whose job fails.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise LofarexecError(f"cannot prepare the findings folder {folder}: "
                             f"{exc.strerror or exc}") from None


def _read_findings(job: ComputeJob, path: Path) -> list[str]:
    """The files a successful node job reported; HostFailed says what went wrong instead."""
    if job.results.get("state") != "succeeded":
        reason = job.results.get("reason") or f"exit status {job.results.get('returncode')}"
        raise HostFailed(f"{job.results.get('state')}: {reason}")
    try:
        findings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HostFailed(f"the node script ended well but its findings {path} cannot be "
                         f"read: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(findings, dict):
        findings = {}
    files = findings.get("files")
    if findings.get("host") != job.host or not isinstance(files, list) or not all(
            isinstance(name, str) for name in files):
        raise HostFailed(f"the findings in {path} are not this host's list of files")
    return files


if __name__ == "__main__":
    sys.exit(datamapper().main())

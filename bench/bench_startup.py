#!/usr/bin/env python3
"""bench_startup: what a 1-job local recipe costs over running its node script by hand.

The same node script run two ways, ``--rounds`` times each, interleaved (one of each per round,
the order alternating), each in a fresh interpreter as a user would start it:

* **recipe**: ``python master/startup.py -j startup -c pipeline.cfg``: a recipe of the seed's
  shape (``BaseRecipe`` + ``RemoteCommandRecipeMixIn``) that schedules ONE job on
  ``localhost`` with ``[remote] method = local``: config, plugin manager, local backend, log
  server, scheduler, journal, report, then the node;
* **bare**: ``subprocess.run([python, nodes/startup.py, 127.0.0.1, 1, STAMP])``: the same node
  script, started by hand (no job token: its records go to its own stderr).

Measured for each: **wall** (from just before the process is started until it has exited),
**to first line** (until the node is about to log its first record: the node writes
``time.monotonic()`` to a stamp file at that moment; CLOCK_MONOTONIC is system-wide on Linux,
so the two clocks agree) and **CPU** (user + system time of the process and the children it
waited for, the node included: what other load on the machine changes least). Reported: the
median of each and the ratio recipe / bare; the target (issue 17) is at most 2x for wall and
first line.

``--floor`` adds **floor**: the least any Python control program does for one such job, with
the standard library only (argparse, configparser and logging imported and used, a listening
socket, a token, the node started with ``subprocess`` in its environment, its records read to
the end): what the ratio cannot go below without a different way of starting Python.

``--compare DIR`` adds two contenders, the same recipe and the same bare node run with another
checkout of lofarexec (e.g. a ``git archive`` of an earlier commit) first on ``PYTHONPATH`` (and
as the recipe's node's ``engine_ppath``), interleaved with the others: before and after in the
same run, for the whole recipe and for the node alone (each recipe's ratio is to its own tree's
bare node).

``--python PYTHON`` runs every contender with that interpreter instead (the checkouts still
first on ``PYTHONPATH``; the install gives the entry points), e.g. the python of a virtual
environment under /tmp with lofarexec installed normally (``python -m venv /tmp/v &&
/tmp/v/bin/pip install .``): start-up
as a user's normal install has it, without the editable-install finder and this machine's own
``.pth`` files, which every Python process of the development environment pays at start.

``--importtime`` also runs the recipe once under ``python -X importtime`` and prints the
slowest imports (cumulative) and whether ``paramiko`` was imported.

Usage::

    python bench/bench_startup.py [--quick] [--rounds N] [--importtime] [--floor]
                                  [--compare DIR | --python PYTHON]

Exit status: 0 after a complete run (target met or not: the table says which), 2 if a run
went wrong.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TARGET_RATIO = 2.0
DEFAULT_ROUNDS = 21
QUICK_ROUNDS = 3
REPO = Path(__file__).resolve().parent.parent

RECIPE = '''\
import sys
from lofarpipe.support.baserecipe import BaseRecipe
from lofarpipe.support.remotecommand import ComputeJob, RemoteCommandRecipeMixIn


class startup(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        node = self.__file__.replace("master", "nodes")
        job = ComputeJob("localhost", f"{sys.executable} {node}", arguments=[STAMP])
        self._schedule_jobs([job])
        return 1 if self.error.is_set() else 0


if __name__ == "__main__":
    sys.exit(startup().main())
'''

NODE = '''\
import sys
import time
from lofarpipe.support.lofarnode import LOFARnode


class startup(LOFARnode):
    def run(self, stamp):
        with open(stamp, "w") as handle:
            handle.write(repr(time.monotonic()))
        self.logger.info("first line")
        return 0


if __name__ == "__main__":
    sys.exit(startup(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
'''


FLOOR = '''\
import argparse, configparser, logging, os, secrets, socket, subprocess, sys

parser = argparse.ArgumentParser()
parser.add_argument("-j")
parser.add_argument("-c")
options = parser.parse_args()
config = configparser.ConfigParser()
config.read(options.c)
logging.basicConfig(level=logging.WARNING)
server = socket.create_server(("127.0.0.1", 0))
token = secrets.token_hex(16)
variables = {**os.environ, "LOFAREXEC_TOKEN": token, "LOFAREXEC_JOB_ID": "0",
             "LOFAREXEC_HOST": "localhost",
             "PYTHONPATH": os.pathsep.join(filter(None, [
                 config.get("deploy", "engine_ppath", fallback=""),
                 os.environ.get("PYTHONPATH", "")]))}
child = subprocess.Popen([sys.executable, NODE, "127.0.0.1", str(server.getsockname()[1]), STAMP],
                         env=variables, stdin=subprocess.DEVNULL)
connection, _ = server.accept()
while connection.recv(65536):
    pass
connection.close()
sys.exit(child.wait())
'''


def write_config(path: Path, folder: Path, engine: Path) -> Path:
    """A pipeline.cfg at ``path``: ``method = local``, nodes run with ``engine`` first on
    their PYTHONPATH."""
    path.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        runtime_directory = {folder}/runtime
        [layout]
        job_directory = {folder}/runtime/jobs/%(job_name)s
        [deploy]
        engine_ppath = {engine}
        [remote]
        method = local
        """), encoding="utf-8")
    return path


def write_tree(folder: Path) -> tuple[Path, Path, Path, Path]:
    """The recipe, its node, a pipeline.cfg and the stamp path, under ``folder``."""
    stamp = folder / "stamp"
    (folder / "master").mkdir()
    (folder / "nodes").mkdir()
    recipe = folder / "master" / "startup.py"
    recipe.write_text(RECIPE.replace("STAMP", repr(str(stamp))), encoding="utf-8")
    node = folder / "nodes" / "startup.py"
    node.write_text(NODE, encoding="utf-8")
    config = write_config(folder / "pipeline.cfg", folder, REPO)
    return recipe, node, config, stamp


def timed(argv: list[str], stamp: Path,
          environment: dict[str, str]) -> tuple[float, float, float]:
    """(wall, to the node's first line, CPU) of one run of ``argv``, in seconds."""
    stamp.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=environment, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0 or not stamp.exists():
        raise SystemExit(f"bench_startup: {argv[1]} failed ({done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    return wall, float(stamp.read_text()) - start, cpu


def import_report(python: str, recipe: Path, config: Path, environment: dict[str, str],
                  top: int) -> None:
    """Run the recipe once under ``-X importtime``; print the slowest imports."""
    done = subprocess.run([python, "-X", "importtime", str(recipe), "-j", "startup",
                           "-c", str(config)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=environment, check=False)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        rows.append((int(cumulative_us), int(own_us), name.rstrip()))
    names = {name.strip() for _, _, name in rows}
    print(f"-X importtime: {len(rows)} modules; paramiko imported: {'paramiko' in names}; "
          f"rich: {'rich' in names}")
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1000:8.1f} ms cumulative  {own / 1000:6.1f} ms own  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds: a smoke test")
    parser.add_argument("--rounds", type=int, help=f"runs of each (default {DEFAULT_ROUNDS})")
    parser.add_argument("--importtime", action="store_true",
                        help="also list the slowest imports of one recipe run")
    parser.add_argument("--floor", action="store_true",
                        help="also run the least a stdlib-only control program does")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also run the recipe with the lofarexec checkout in DIR")
    parser.add_argument("--python", metavar="PYTHON",
                        help="run every contender with this interpreter (e.g. a venv's, with "
                             "lofarexec's dependencies): start-up as a normal install has it")
    options = parser.parse_args(argv)
    if options.compare is not None and not (options.compare / "lofarexec").is_dir():
        parser.error(f"--compare {options.compare}: no lofarexec package there; give the "
                     "folder of a checkout (or of a git archive of one)")
    rounds = options.rounds or (QUICK_ROUNDS if options.quick else DEFAULT_ROUNDS)
    # This checkout's lofarexec and built-in backends, whatever is installed.
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends")])}
    python = options.python or sys.executable
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench_startup.") as name:
        recipe, node, config, stamp = write_tree(Path(name))
        contenders = {
            "recipe": ([python, str(recipe), "-j", "startup", "-c", str(config)], environment),
            "bare": ([python, str(node), "127.0.0.1", "1", str(stamp)], environment),
        }
        if options.floor:
            floor = Path(name) / "floor.py"
            floor.write_text(FLOOR.replace("NODE", repr(str(node))).replace(
                "STAMP", repr(str(stamp))), encoding="utf-8")
            contenders["floor"] = (
                [python, str(floor), "-j", "startup", "-c", str(config)], environment)
        if options.compare is not None:
            other = options.compare.resolve()
            other_config = write_config(Path(name) / "compare.cfg", Path(name), other)
            other_environment = {
                **environment, "PYTHONPATH": os.pathsep.join([str(other), str(other / "backends")])}
            contenders["compared"] = (
                [python, str(recipe), "-j", "startup", "-c", str(other_config)], other_environment)
            contenders["bare compared"] = (contenders["bare"][0], other_environment)
        for argv, variables in contenders.values():  # warm the page and bytecode caches
            timed(argv, stamp, variables)
        figures: dict[str, list[tuple[float, float, float]]] = {what: [] for what in contenders}
        for index in range(rounds):
            order = list(contenders) if index % 2 == 0 else list(reversed(contenders))
            for what in order:
                command, variables = contenders[what]
                figures[what].append(timed(command, stamp, variables))
        if options.importtime:
            import_report(python, recipe, config, environment, top=25)
    medians = {what: tuple(statistics.median(row[column] for row in rows) for column in range(3))
               for what, rows in figures.items()}
    note = " (--quick: not a figure)" if options.quick else ""
    print(f"bench_startup: 1-job local recipe vs bare subprocess.run of its node, "
          f"{rounds} interleaved rounds, medians{note}; load average "
          f"{os.getloadavg()[0]:.2f}")
    if options.compare is not None:
        print(f"compared: the recipe with {options.compare}")
    if options.python is not None:
        print(f"interpreter: {options.python}")
    print(f"{'':13}  {'wall ms':>9}  {'first line ms':>13}  {'CPU ms':>8}")
    for what, (wall, first, cpu) in medians.items():
        print(f"{what:13}  {wall * 1000:9.1f}  {first * 1000:13.1f}  {cpu * 1000:8.1f}")
    for what in [name for name in medians if not name.startswith("bare")]:
        bare = "bare compared" if what == "compared" else "bare"  # each tree's own node
        wall_ratio, first_ratio, cpu_ratio = (medians[what][column] / medians[bare][column]
                                              for column in range(3))
        verdict = "met" if max(wall_ratio, first_ratio) <= TARGET_RATIO else "NOT met"
        print(f"{what + '/' + bare:22}  {wall_ratio:6.2f}x  {first_ratio:6.2f}x  {cpu_ratio:6.2f}x"
              f"   target <= {TARGET_RATIO}x (wall, first line): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``lofarexec`` command: what is installed, and tools around runs and mapfiles.

``lofarexec backends`` lists the installed backends; ``lofarexec mapfile show FILE`` prints the
files per host of a mapfile and ``lofarexec mapfile validate FILE...`` checks mapfiles, printing
one ``file:line: what is wrong`` line per bad file and exiting 1 when any is bad (an empty
map is valid, but said to be EMPTY). Both read the seed's parset mapfiles and the JSON or
Python-literal DataMap files, told apart by content. ``lofarexec report JOB_DIRECTORY`` writes
a run's report (:mod:`lofarexec.run.report`) from its journal. ``lofarexec check-hosts``
probes hosts through the configured backend (:mod:`lofarexec.run.checkhosts`) and exits 1 when
any is unusable; ``lofarexec run RECIPE ARGS`` finds a recipe by name in ``recipe_directories``
(:mod:`lofarexec.run.recipefinder`) or by path and runs it as ``python RECIPE ARGS`` would.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence

from lofarexec import __version__
from lofarexec.errors import LofarexecError


def _list_backends(options: argparse.Namespace) -> int:
    """List the backends (``-v``: with their settings); a broken plugin is one line on stderr
    naming its package, and exit status 1, while the working backends are still listed."""
    from lofarexec.plugin.manager import build_plugin_manager
    from lofarexec.plugin.metadata import describe_backends, render_rst, render_text

    manager = build_plugin_manager(warn_broken=False)
    if options.format == "rst":  # the docs' settings reference: the built-in backends only
        registry = manager.backends
        own = [name for name in registry.names() if registry.provider(name).split()[0]
               == "lofarexec"]
        sys.stdout.write(render_rst(describe_backends(registry, own)))
    else:
        sys.stdout.write(render_text(describe_backends(manager.backends), verbose=options.verbose))
    for line in manager.broken:
        print(f"lofarexec: {line}", file=sys.stderr)
    return 1 if manager.broken else 0


def _show_mapfile(options: argparse.Namespace) -> int:
    """Print a table of hosts and their file counts, and the totals."""
    from lofarexec.mapfiles.datamaps import count_per_host

    kind, counts = count_per_host(options.file)
    with_skips = kind != "parset mapfile"  # a parset mapfile has no skip flags
    width = max([len("host"), len("total"), *(len(count.host) for count in counts)])
    header = f"{'host':<{width}}  {'files':>7}" + (f"  {'skipped':>7}" if with_skips else "")
    print(f"{options.file}: {kind}")
    print(header)
    for count in counts:
        print(f"{count.host:<{width}}  {count.files:>7}"
              + (f"  {count.skipped:>7}" if with_skips else ""))
    files = sum(count.files for count in counts)
    skipped = sum(count.skipped for count in counts)
    print(f"{'total':<{width}}  {files:>7}" + (f"  {skipped:>7}" if with_skips else "")
          + f"  ({_count(len(counts), 'host')})")
    return 0


def _validate_mapfiles(options: argparse.Namespace) -> int:
    """Check each file; one ``file:line: what`` line on stderr per bad file, exit 1 if any.

    A map with no entries (an empty file, only comments, ``[]``, or hosts with empty lists) is
    well formed, so it stays valid (exit 0: a step may rightly produce nothing, and scripts
    check many maps at once), but its line says ``but EMPTY: 0 entries`` (or ``0 files``) so
    that nobody takes it for a map with work in it; a run of it warns likewise.
    """
    from lofarexec.errors import DataMapError
    from lofarexec.mapfiles.datamaps import count_per_host

    status = 0
    for filename in options.files:
        try:
            kind, counts = count_per_host(filename)
        except DataMapError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        files = sum(count.files for count in counts)
        if files:
            print(f"{filename}: valid {kind}, {_count(len(counts), 'host')}, "
                  f"{_count(files, 'file')}")
        elif counts:
            print(f"{filename}: valid {kind}, {_count(len(counts), 'host')}, but EMPTY: "
                  "0 files (no job will run for it)")
        else:
            print(f"{filename}: valid {kind}, but EMPTY: 0 entries (no job will run for it)")
    return status


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _add_mapfile_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mapfile = commands.add_parser(
        "mapfile", help="inspect and check mapfiles (parset, or JSON/literal DataMap)")
    actions = mapfile.add_subparsers(dest="mapfile_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the files per host, and the totals")
    show.add_argument("file", help="the mapfile")
    show.set_defaults(action=_show_mapfile)
    validate = actions.add_parser(
        "validate", help="check mapfiles; exit 1 with 'file:line: what' for each bad one")
    validate.add_argument("files", nargs="+", metavar="file", help="the mapfile(s)")
    validate.set_defaults(action=_validate_mapfiles)


def _report(options: argparse.Namespace) -> int:
    """Print the text report, or write the HTML (or text) report to ``-o``."""
    from lofarexec.run.report import REPORT_NAME, build_report, render_text, write_report

    report = build_report(options.job_directory)
    text = options.format == "text"
    if text and options.output is None:
        sys.stdout.write(render_text(report))
        return 0
    path = options.output or f"{options.job_directory}/{REPORT_NAME}"
    try:
        print(write_report(report, path, text_format=text))
    except OSError as exc:
        raise LofarexecError(f"cannot write {path}: {exc.strerror or exc}; give a writable "
                             "file with -o") from None
    return 0


def _add_report_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report", help="a run's report from its journal: summary, timeline, hosts, failures")
    report.add_argument("job_directory", metavar="JOB_DIRECTORY",
                        help="the job directory holding journal.jsonl")
    report.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: "
                        "JOB_DIRECTORY/report.html for html; standard output for text)")
    report.add_argument("--format", choices=("html", "text"), default="html",
                        help="html (self-contained page, the default) or text")
    report.set_defaults(action=_report)


def _check_hosts(options: argparse.Namespace) -> int:
    """Probe the hosts, print the table, and one ``HOST: why`` line on stderr per unusable one."""
    from lofarexec.config import find_config, load_config
    from lofarexec.config.hostlist import allocation_hosts
    from lofarexec.run.checkhosts import check_hosts, print_table

    path = find_config(options.config, recipe_directory=None, working_directory=os.getcwd())
    now = datetime.datetime.now().isoformat(timespec="seconds")
    config = load_config(path, job_name="check-hosts", start_time=now)
    hosts = list(options.hosts)
    if options.mapfile:
        from lofarexec.mapfiles.datamaps import count_per_host

        hosts = [count.host for count in count_per_host(options.mapfile)[1]]
    elif not hosts:
        hosts = allocation_hosts(config.get("cluster", "hosts", fallback=None), source=str(path))
    if not hosts:
        raise LofarexecError("no hosts to check: name them (lofarexec check-hosts HOST ...), "
                             "give --mapfile FILE, or set [cluster] hosts in " + str(path))
    checks = check_hosts(config, hosts, python=options.python, timeout=options.timeout)
    print_table(checks, sys.stdout)
    sys.stdout.flush()
    for check in checks:
        if not check.usable:
            print(f"lofarexec: check-hosts: {check.host}: {check.reason}", file=sys.stderr)
    return 0 if all(check.usable for check in checks) else 1


def _add_check_hosts_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    check = commands.add_parser(
        "check-hosts", help="probe hosts with the configured backend: connection, Python, "
        "lofarexec's node side, node scripts' folder; exit 1 if any is unusable")
    check.add_argument("-c", "--config", help="pipeline.cfg to use (default: ./pipeline.cfg, "
                       "then ~/.pipeline.cfg)")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--mapfile", metavar="FILE", help="check the hosts of this mapfile")
    where.add_argument("hosts", nargs="*", default=[], metavar="HOST",
                       help="hosts to check (default: [cluster] hosts)")
    check.add_argument("--python", help="the hosts' Python (default: the backend's "
                       "remote_python, else python3)")
    check.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="seconds each host may take to answer (default: 30)")
    check.set_defaults(action=_check_hosts)


def _run_recipe(options: argparse.Namespace) -> int:
    """Replace this process with ``python RECIPE ARGS``: same argv, signals and exit status."""
    from lofarexec.run.recipefinder import find_recipe, recipe_argv

    argv = recipe_argv(find_recipe(options.recipe, options.arguments), options.arguments)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        raise LofarexecError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    return 1  # pragma: no cover - execv does not return


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run", help="run a recipe found by name in [DEFAULT] recipe_directories, or by path, "
        "as 'python RECIPE ARGS' would")
    run.add_argument("recipe", metavar="RECIPE",
                     help="a name (<dir>/master/NAME.py or <dir>/NAME.py) or a path")
    run.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="the recipe's own options and arguments (-j JOB, -c FILE, ...)")
    run.set_defaults(action=_run_recipe)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofarexec",
        description="Pipeline-native task distribution: run recipes' node scripts over a "
        "cluster. Recipes run as programs (python my_recipe.py -j JOB); this command "
        "inspects the installation.",
    )
    parser.add_argument("--version", action="version", version=f"lofarexec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    backends = commands.add_parser(
        "backends", help="list the installed backends and the package providing each"
    )
    backends.add_argument("-v", "--verbose", action="store_true",
                          help="also each backend's settings: type, default and help text")
    backends.add_argument("--format", choices=("text", "rst"), default="text",
                          help="rst: the settings reference of the built-in backends (docs)")
    backends.set_defaults(action=_list_backends)
    _add_mapfile_commands(commands)
    _add_report_command(commands)
    _add_check_hosts_command(commands)
    _add_run_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if not getattr(options, "action", None):
        parser.print_help()
        return 0
    try:
        return int(options.action(options))
    except LofarexecError as exc:
        print(f"lofarexec: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

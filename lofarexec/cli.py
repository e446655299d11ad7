"""The ``lofarexec`` command: what is installed, and (later) tools around runs and mapfiles."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lofarexec import __version__
from lofarexec.errors import LofarexecError


def _list_backends(_: argparse.Namespace) -> int:
    from lofarexec.plugin.manager import build_plugin_manager

    registry = build_plugin_manager().backends
    names = registry.names()
    width = max((len(name) for name in names), default=0)
    for name in names:
        backend = registry.get(name)
        summary = (backend.__doc__ or "").strip().splitlines()
        print(f"{name:<{width}}  {registry.provider(name):<24}  {summary[0] if summary else ''}")
    return 0


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
    backends.set_defaults(action=_list_backends)
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

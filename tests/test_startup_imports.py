"""Modules a recipe or a node does not need at start-up stay unimported (issue 17: start-up
cost). Each check runs in a fresh interpreter, as a recipe or a node script starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


def imported_after(code: str, names: list[str]) -> list[str]:
    """Which of ``names`` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps([n for n in {names!r} if n in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, check=True, stdin=subprocess.DEVNULL)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["lofarexec", "lofarpipe.support.lofarnode"])
def test_importing_lofarexec_does_not_import_importlib_abc(module: str) -> None:
    # importlib.abc imports importlib.resources: ~9 ms at the start of every node and recipe
    # in a normal install (the old-path aliases need only a finder's methods, not its ABC)
    assert imported_after(f"import {module}", ["importlib.abc"]) == []


def test_a_log_server_on_a_numeric_address_looks_nothing_up() -> None:
    # a lookup of a text address loads the idna codec (~1 ms before a recipe's first job)
    code = ("from lofarexec.channel.logserver import LogServer\n"
            "with LogServer(bind_address='127.0.0.1') as server:\n"
            "    assert server.address[1] > 0")
    assert imported_after(code, ["encodings.idna"]) == []

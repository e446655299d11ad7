"""Modules a recipe or a node does not need at start-up stay unimported (issue 17: start-up
cost). Each check runs in a fresh interpreter, as a recipe or a node script starts."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


def imported_after(code: str, names: list[str], *flags: str) -> list[str]:
    """Which of ``names`` a fresh interpreter (started with ``flags``) has imported after
    running ``code``."""
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps([n for n in {names!r} if n in sys.modules]))")
    done = subprocess.run([sys.executable, *flags, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, check=True, stdin=subprocess.DEVNULL, timeout=60)
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


NODE_SCRIPT = """\
import os, socket, threading
server = socket.create_server(("127.0.0.1", 0))
def drain():
    connection, _ = server.accept()
    while connection.recv(4096):
        pass
    connection.close()
threading.Thread(target=drain, daemon=True).start()
os.environ.update(LOFAREXEC_TOKEN="t" * 32, LOFAREXEC_JOB_ID="1", LOFAREXEC_HOST="localhost")
from lofarpipe.support.lofarnode import LOFARnode
class startup(LOFARnode):
    def run(self):
        self.logger.info("first line")
assert startup("127.0.0.1", server.getsockname()[1]).run_with_logging() == 0
"""


def test_a_node_imports_nothing_it_does_not_need_before_its_first_line() -> None:
    # paid by every job: pkgutil (for lofarpipe's path) imports typing and importlib.util
    # (~3-4 ms in a normal install); a host name as str is looked up through the idna codec
    # (stringprep, unicodedata: ~1 ms). -S: without this machine's .pth files, which import
    # typing themselves (a normal install has none).
    unwanted = ["pkgutil", "typing", "importlib", "importlib.util", "encodings.idna"]
    assert imported_after(NODE_SCRIPT, unwanted, "-S") == []


def test_lofarpipe_still_joins_a_lofarpipe_folder_found_later_on_the_path(tmp_path: Path) -> None:
    # one on the path twice and one in a zip file: each portion once, in sys.path's order
    for folder in (tmp_path / "plain", tmp_path / "zipped"):
        (folder / "lofarpipe" / "recipes").mkdir(parents=True)
        (folder / "lofarpipe" / "recipes" / f"{folder.name}.py").write_text("X = 1\n")
    archive = tmp_path / "portions.zip"
    with zipfile.ZipFile(archive, "w") as zipped:  # with its folders' entries, as zip makes
        for name in ("lofarpipe", "lofarpipe/recipes", "lofarpipe/recipes/zipped.py"):
            zipped.write(tmp_path / "zipped" / name, name)
    entries = [str(REPO), str(tmp_path / "plain"), str(archive), str(tmp_path / "plain")]
    code = (f"import sys; sys.path[:0] = {entries!r}\n"
            "import lofarpipe, lofarpipe.recipes.plain, lofarpipe.recipes.zipped\n"
            "print(lofarpipe.__path__)")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, check=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.stdout.strip() == repr([str(REPO / "lofarpipe"),
                                        str(tmp_path / "plain" / "lofarpipe"),
                                        str(archive / "lofarpipe")])

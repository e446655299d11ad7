"""A recipe's exit (issue 17): garbage is collected once at exit, finalizers included, and what
is still alive is frozen so that tearing the interpreter down does not search it again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import write_config

RECIPE = """\
import atexit, gc, sys
from lofarexec import BaseRecipe

atexit.register(lambda: print("frozen at the end:", gc.get_freeze_count() > 0, flush=True))


class Cycle:
    def __init__(self, path):
        self.me = self
        self.handle = open(path, "w")
        self.handle.write("written by a finalizer at exit")  # buffered: flushed when closed

    def __del__(self):
        self.handle.close()


class exiting(BaseRecipe):
    def go(self):
        super().go()
        gc.disable()  # so that only the exit's collection can find the cycle
        Cycle(sys.argv[-1])  # garbage at once, but only a collection finds it
        print("frozen during the run:", gc.get_freeze_count() > 0, flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(exiting().main(sys.argv[1:-1]))
"""


def test_exit_collects_garbage_with_finalizers_then_freezes(tmp_path: Path):
    recipe = tmp_path / "exiting.py"
    recipe.write_text(RECIPE)
    written = tmp_path / "written.txt"
    config = write_config(tmp_path)
    done = subprocess.run([sys.executable, str(recipe), "-j", "exiting", "-c", str(config),
                           str(written)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "frozen during the run: False" in done.stdout
    assert "frozen at the end: True" in done.stdout
    assert written.read_text() == "written by a finalizer at exit"

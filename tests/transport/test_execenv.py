"""Creating children as Popen does: the fast path (fork_exec) and the Popen fallback alike."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from lofarexec.transport import execenv as spawn_module
from lofarexec.transport.execenv import ExecEnvironment, spawn


@pytest.fixture(params=["fork_exec", "popen"])
def path(request, monkeypatch):
    """Every test through the fast path and through the Popen fallback."""
    if request.param == "popen":
        monkeypatch.setattr(spawn_module, "_fork_exec", None)
    elif spawn_module._fork_exec is None:
        pytest.skip("no known fork_exec on this Python: only the fallback runs")
    return request.param


def run(argv, env=None) -> tuple[int, str]:
    """Spawn ``argv`` with its stdout on a pipe; (exit status, what it wrote)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with open(os.devnull, "rb") as devnull:
        try:
            pid, popen = spawn(argv, env=env, stdin=devnull.fileno(), stdout=write_end,
                               stderr=write_end)
        finally:
            os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        text = output.read().decode()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if popen is not None:
        popen.returncode = code  # reaped here: the fallback's Popen must not warn
    return code, text


PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_the_child_gets_exactly_the_environment(path):
    import json

    env = ExecEnvironment({"PATH": os.environ["PATH"], "ONE": "1", "UNICODE": "ünï ✓"})
    code, text = run([sys.executable, "-c", PRINT_ENV], env.plus({"JOB": "7", "ONE": "one"}))
    assert code == 0
    seen = json.loads(text)
    seen.pop("LC_CTYPE", None)  # the interpreter may coerce the locale on its own
    assert seen == {"PATH": os.environ["PATH"], "ONE": "one", "UNICODE": "ünï ✓", "JOB": "7"}


def test_no_environment_means_ours(path, monkeypatch):
    import json

    monkeypatch.setenv("LOFAREXEC_SPAWN_TEST", "inherited")
    code, text = run([sys.executable, "-c", PRINT_ENV])
    assert code == 0 and json.loads(text)["LOFAREXEC_SPAWN_TEST"] == "inherited"


def test_a_bare_program_name_is_looked_for_in_the_childs_path(path, tmp_path: Path):
    program = tmp_path / "only-here"
    program.write_text("#!/bin/sh\necho found\n")
    program.chmod(0o755)
    env = ExecEnvironment({"PATH": f"/nonexistent:{tmp_path}"})
    assert run(["only-here"], env) == (0, "found\n")
    with pytest.raises(FileNotFoundError):
        run(["only-here"])  # not in our own PATH


def test_own_session_and_stdin_given(path):
    code, text = run([sys.executable, "-c",
                      "import os, sys; print(os.getsid(0) == os.getpid(), sys.stdin.read() == '')"])
    assert (code, text) == (0, "True True\n")


@pytest.mark.parametrize("name, mode, error, number", [
    ("missing", None, FileNotFoundError, errno.ENOENT),
    ("not-executable", 0o644, PermissionError, errno.EACCES),
])
def test_a_program_that_cannot_start_raises_oserror(path, tmp_path, name, mode, error, number):
    program = tmp_path / name
    if mode is not None:
        program.write_text("#!/bin/sh\n")
        program.chmod(mode)
    with pytest.raises(error) as raised:
        run([str(program)])
    assert raised.value.errno == number and raised.value.filename == str(program)


def test_exit_status_passes_through(path):
    assert run(["sh", "-c", "exit 3"]) == (3, "")


def test_environment_names_with_equals_are_refused():
    with pytest.raises(ValueError, match="illegal environment variable name"):
        ExecEnvironment({"A=B": "x"})


def test_plus_replaces_same_names_and_leaves_the_base_alone():
    base = ExecEnvironment({"A": "1", "B": "2"})
    added = base.plus({"B": "two", "C": "3"})
    assert sorted(added.entries) == [b"A=1", b"B=two", b"C=3"]
    assert base.entries == [b"A=1", b"B=2"]
    assert sorted(added.plus({"A": "one"}).entries) == [b"A=one", b"B=two", b"C=3"]
    assert added.mapping() == {b"A": b"1", b"B": b"two", b"C": b"3"}
    assert base.plus({"PATH": "/x"}).path == "/x" and base.path is None

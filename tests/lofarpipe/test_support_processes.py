"""``SubProcessGroup``, ``catch_segfaults`` and the other process helpers of lofarpipe.support."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from lofarpipe.support.subprocessgroup import SubProcessGroup
from lofarpipe.support.utilities import (
    catch_segfaults,
    create_directory,
    delete_directory,
    group_iterable,
    read_initscript,
    string_to_list,
)

LOG = "test.lofarpipe.processes"

# 10 lines to stderr, then far more than a pipe holds to stdout: reading one stream must not
# block the other
CHATTY = [sys.executable, "-c",
          "import sys\n"
          "for i in range(10): print(f'e{i}e', file=sys.stderr, flush=True)\n"
          "for i in range(4096): print(f'o{i}o ' * 6)\n"]


def records(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == level]


def test_output_of_every_command_is_logged_line_by_line(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    group = SubProcessGroup(logging.getLogger(LOG), polling_interval=1)
    group.run(CHATTY)
    group.run(CHATTY)
    assert group.wait_for_finish() is None
    assert records(caplog, logging.WARNING).count("e9e") == 2
    stdout = [line for line in records(caplog, logging.DEBUG) if line.startswith("o")]
    assert len(stdout) == 2 * 4096 and stdout.count("o4095o " * 6) == 2
    assert sum("completed with exit status 0" in m for m in records(caplog, logging.INFO)) == 2


def test_waiting_without_commands_returns_at_once():
    assert SubProcessGroup(polling_interval=3600).wait_for_finish() is None


def test_failures_are_listed_with_their_exit_status():
    group = SubProcessGroup(polling_interval=1)
    group.run("true")
    group.run(["sh", "-c", "exit 3"])
    assert group.wait_for_finish() == [(["sh", "-c", "exit 3"], 3)]
    with pytest.raises(TypeError):
        group.run(42)  # type: ignore[arg-type]


def test_commands_past_the_limit_wait_for_a_free_slot(tmp_path):
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    for gate in gates:
        os.mkfifo(gate)
    started: list[int] = []
    usage = type("Usage", (), {"addPID": lambda self, pid: started.append(pid)})()
    group = SubProcessGroup(usageStats=usage, max_concurrent_processes=2, polling_interval=1)
    for gate in gates:
        group.run(["sh", "-c", f'read line < "{gate}"; test "$line" = go'])
    assert len(started) == 2 and len(group.processes_waiting_for_execution) == 1

    def open_gates() -> None:
        for gate in gates:  # the third opens only once its command runs
            with open(gate, "w") as stream:
                stream.write("go\n")

    opener = threading.Thread(target=open_gates)
    opener.start()
    try:
        assert group.wait_for_finish() is None
    finally:
        opener.join()
    assert len(started) == 3


def test_the_kill_switch_stops_running_and_queued_commands():
    stop = threading.Event()
    group = SubProcessGroup(max_concurrent_processes=1, polling_interval=1, killSwitch=stop)
    group.run(["sleep", "600"])
    group.run(["sleep", "601"])
    stop.set()
    assert group.wait_for_finish() == [(["sleep", "600"], -15)]
    assert len(group.process_group) == 1


@pytest.fixture
def logger(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    return logging.getLogger(LOG)


def test_catch_segfaults_runs_a_segfaulted_command_again(tmp_path, logger, caplog):
    marker = tmp_path / "crashed"
    script = f'if [ ! -e "{marker}" ]; then touch "{marker}"; kill -SEGV $$; fi; echo fine'
    cleanups: list[int] = []
    process = catch_segfaults(["sh", "-c", script], str(tmp_path / "work"), None, logger,
                              cleanup=lambda: cleanups.append(1))
    assert process.returncode == 0 and cleanups == [1]
    assert "sh process segfaulted!" in records(caplog, logging.WARNING)
    assert "sh stdout: fine\n" in records(caplog, logging.DEBUG)
    assert (tmp_path / "work").is_dir()  # the working folder is made


def test_catch_segfaults_raises_for_a_failure_or_too_many_segfaults(tmp_path, logger):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        catch_segfaults(["sh", "-c", "echo no >&2; exit 2"], None, None, logger)
    assert failed.value.returncode == 2
    with pytest.raises(subprocess.CalledProcessError) as crashed:
        catch_segfaults(["sh", "-c", "kill -SEGV $$"], None, None, logger, max=0)
    assert crashed.value.returncode == -11


def test_read_initscript_gives_the_environment_the_script_sets(tmp_path, logger, caplog):
    script = tmp_path / "init.sh"
    script.write_text("export LOFARROOT=/opt/lofar\nexport TWO_LINES='a\nb'\n")
    environment = read_initscript(logger, str(script))
    assert environment["LOFARROOT"] == "/opt/lofar" and environment["TWO_LINES"] == "a\nb"
    assert read_initscript(logger, str(tmp_path / "none.sh")) == {}
    assert any("not found" in m for m in records(caplog, logging.WARNING))


def test_folders_and_lists(tmp_path):
    create_directory(tmp_path / "a" / "b")
    create_directory(tmp_path / "a" / "b")  # exists: nothing
    create_directory("")
    delete_directory(tmp_path / "a")
    delete_directory(tmp_path / "a")  # gone: nothing
    assert not (tmp_path / "a").exists()
    assert string_to_list("[lce001, lce002 ,]") == ["lce001", "lce002"]
    assert list(group_iterable(range(5), 2)) == [(0, 1), (2, 3), (4,)]

"""pipelinelogging, lofarexceptions, remotecommand helpers and the modules left out."""

from __future__ import annotations

import configparser
import logging
import subprocess
import sys
import threading

import pytest

from lofarexec import errors
from lofarpipe.support import lofarexceptions, utilities
from lofarpipe.support.pipelinelogging import (
    CatchLog4CPlus,
    getSearchingLogger,
    log_process_output,
    log_time,
)
from lofarpipe.support.remotecommand import ProcessLimiter, run_remote_command, threadwatcher
from tests.helpers import REPO

LOG = "test.lofarpipe.logging"


@pytest.fixture
def logger(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    return logging.getLogger(LOG)


def messages(caplog, level):
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_log_time_and_log_process_output(logger, caplog):
    with pytest.raises(ValueError), log_time(logger):
        raise ValueError  # the time is logged even so
    assert messages(caplog, logging.INFO)[0].startswith("Total time ")
    log_process_output("DPPP", b"Debug: registered context Global=0\nstep 1\n",
                       "tcgetattr: Invalid argument\n", logger)
    assert "DPPP stdout: step 1\n" in messages(caplog, logging.DEBUG)
    assert not messages(caplog, logging.WARNING)  # stderr held only noise


def test_catch_log4cplus_forwards_the_programs_log_file(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    with CatchLog4CPlus(str(tmp_path), LOG + ".dppp", "DPPP") as caught:
        properties = (tmp_path / "DPPP.log_prop").read_text()
        assert f"File={tmp_path}/pipeline_process.log\n" in properties
        with open(tmp_path / "pipeline_process.log", "a") as log:  # as the program would
            log.write("INFO - started\nINFO - done\n")
    assert caught.name == LOG + ".dppp"
    assert [r.getMessage() for r in caplog.records if r.name == LOG + ".dppp"] == [
        "INFO - started", "INFO - done"]


def test_a_searching_logger_keeps_the_records_that_match():
    logger = getSearchingLogger(LOG + ".search")
    logger.searchpatterns["cycles"] = r"cycle \d+ done"
    logger.warning("cycle 3 done")
    logger.warning("something else")
    assert [r.getMessage() for r in logger.searchpatterns["cycles"].results] == ["cycle 3 done"]
    logger.searchpatterns.zero("cycles")
    assert not logger.searchpatterns["cycles"].results
    assert type(logging.getLogger(LOG + ".plain")) is logging.Logger


def test_every_exception_name_is_on_lofarexecs_tree():
    assert lofarexceptions.PipelineException is errors.LofarexecError
    assert lofarexceptions.DataMapError is errors.DataMapError
    assert lofarexceptions.PipelineQuit is errors.PipelineQuit
    for name in ("ExecutableMissing", "PipelineRecipeFailed", "PipelineReceipeNotFound",
                 "ClusterError", "LofarBindingsMissing"):
        assert issubclass(getattr(lofarexceptions, name), errors.LofarexecError)
    assert issubclass(lofarexceptions.LofarBindingsMissing, ImportError)


@pytest.mark.parametrize("module", ["lofarpipe.support.parset", "lofarpipe.support.clusterdesc"])
def test_a_module_needing_lofars_bindings_ends_a_recipe_with_one_line(tmp_path, module):
    recipe = tmp_path / "recipe.py"
    recipe.write_text(f"import {module}\n")
    result = subprocess.run([sys.executable, str(recipe)], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f"recipe.py: {module} is not provided by lofarexec: it needs "
                             "lofar.parameterset, LOFAR's C++ bindings; install the LOFAR "
                             "software (KERN package 'lofar') and use lofar.parameterset "
                             "directly\n")
    with pytest.raises(ImportError, match="patch_parset is not provided"):
        utilities.patch_parset("a.parset", {"key": "value"})


def test_process_limiter_and_threadwatcher(logger):
    limiter = ProcessLimiter(1)
    assert limiter["lce001"].acquire(blocking=False)
    assert not limiter["lce001"].acquire(blocking=False)  # bound 1 per host
    assert limiter["lce002"].acquire(blocking=False)
    unlimited = ProcessLimiter()
    assert all(unlimited["lce001"].acquire() for _ in range(100))

    stop = threading.Event()
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(1))
    threadwatcher([worker], logger, stop)
    assert done == [1] and not stop.is_set()
    waiting = threading.Thread(target=stop.wait)
    threadwatcher([waiting, waiting], logger, stop)  # starting it twice fails: stop, then join
    assert stop.is_set() and not waiting.is_alive()


def config(remote: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(f"[remote]\n{remote}\n")
    return parser


def test_run_remote_command_gives_the_command_line_of_the_method(tmp_path, logger):
    local = config("method = local")
    argv = run_remote_command(local, logger, "localhost", "echo", {}, ["a b", 1])
    assert subprocess.run(argv, capture_output=True, text=True).stdout == "a b 1\n"
    ssh = run_remote_command(config(""), logger, "lce001", "python3 node.py", {"X": "1 2"}, ["a b"])
    assert ssh == ["ssh", "-n", "-tt", "-x", "lce001", "--", "/bin/sh", "-c",
                   "'X='\"'\"'1 2'\"'\"' python3 node.py '\"'\"'a b'\"'\"''"]
    custom = config("method = custom_cmdline\ncmdline = ssh {host} {command}")
    assert run_remote_command(custom, logger, "h", "python3 node.py", {}, [7]) == [
        "ssh", "h", "python3", "node.py", "7"]

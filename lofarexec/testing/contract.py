"""The contract every transport must honour, as one pytest suite any backend can run.

Subclass :class:`BackendContract` in a test module and give it a ``contract_setup`` fixture
that returns a :class:`ContractSetup` for your backend::

    from lofarexec.testing.contract import BackendContract, ContractSetup

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def contract_setup(self, tmp_path):
            return ContractSetup(method="mine", hosts=["h1", "h2", "h3", "h4"],
                                 directory=tmp_path, python="/usr/bin/python3")

Every test runs real jobs through the whole runner (scheduler, log receiver, journal), with node
scripts written to ``directory``, which must be visible at the same path on every host (as the
seed's NFS-mounted pipeline is). Override :meth:`BackendContract.process_alive` when the hosts
are other machines, :meth:`~BackendContract.unreachable_host` when the backend can be given a
host it cannot reach, and :meth:`~BackendContract.failing_open_overrides` when settings can make
its ``open()`` fail (the tests that need them are skipped otherwise, saying so).
"""

from __future__ import annotations

import json
import logging
import signal
import textwrap
import threading
from collections.abc import Iterator

import pytest

from lofarexec.errors import PipelineQuit
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from lofarexec.testing import procs
from lofarexec.testing.backend_promises import (
    MISSING_PROGRAM_REASON,
    PACKAGE_ROOT,
    BackendPromises,
    ContractSetup,
    contract_config,
)

__all__ = ["HOSTILE_ARGUMENTS", "BackendContract", "ContractSetup"]

#: Arguments that break naive quoting: each must reach the node exactly.
HOSTILE_ARGUMENTS = ["", " ", "two words", "'single'", '"double"', "$HOME", "${PATH}", "`id`",
                     "$(id)", "a;b", "a|b", "a&&b", "a\nb", "back\\slash", "ünïcødé ✓", "*",
                     "-n", "--", "%s%d", "tab\there", "trailing ", "~", "!event", "a'b\"c"]


NODE_TEMPLATE = """\
import fcntl, json, os, signal, subprocess, sys, time
from lofarexec.node import LOFARnode

class {name}(LOFARnode):
    def run(self, *args):
{body}

if __name__ == "__main__":
    sys.exit({name}(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


class BackendContract(BackendPromises):
    """The behaviour every backend must have; see the module docstring for how to use it.

    The tests here run real node scripts through the whole runner; those inherited from
    :class:`~lofarexec.testing.backend_promises.BackendPromises` hold the backend alone to the
    interface's promises (``report`` once, ``kill`` and ``close`` safe twice).
    """

    # -- helpers ---------------------------------------------------------------------------------
    def node(self, setup: ContractSetup, name: str, body: str) -> str:
        """Write a node script whose ``run(*args)`` body is ``body``; return its command."""
        path = setup.directory / f"{name}.py"
        path.write_text(NODE_TEMPLATE.format(name=name, body=textwrap.indent(body, " " * 8)))
        return f"{setup.python} {path}"

    def run(self, setup: ContractSetup, jobs: list[ComputeJob], *, max_per_node: int | None = None,
            overrides: dict[str, dict[str, str]] | None = None,
            runner_box: list[JobRunner] | None = None) -> threading.Event:
        """Run ``jobs`` through the whole runner; ``overrides`` are pipeline.cfg values."""
        config = contract_config(setup, overrides)
        error = threading.Event()
        runner = JobRunner(config, recipe_name="contract", error=error)
        if runner_box is not None:
            runner_box.append(runner)
        runner.schedule(jobs, max_per_node=max_per_node)
        return error

    def process_alive(self, host: str, pid: int) -> bool:
        """Whether ``pid`` still runs on ``host`` (a zombie counts as gone)."""
        return procs.running(pid)

    def wait_gone(self, host: str, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` has exited on ``host``, on its pidfd (not a sleep loop).

        Override together with :meth:`process_alive` when the hosts are other machines.
        """
        return procs.wait_gone(pid, timeout)

    # -- the contract ----------------------------------------------------------------------------
    def test_argv_round_trip(self, contract_setup: ContractSetup) -> None:
        out = contract_setup.directory / "argv.json"
        command = self.node(contract_setup, "argv_node",
                            f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[3:]))\nreturn 0")
        job = ComputeJob(contract_setup.hosts[0], command, HOSTILE_ARGUMENTS)
        self.run(contract_setup, [job])
        assert job.results["state"] == "succeeded", job.results
        assert json.loads(out.read_text()) == HOSTILE_ARGUMENTS

    def test_environment_forwarding(self, contract_setup: ContractSetup,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOFAREXEC_CONTRACT_VALUE", "it $travels; 'as is'")
        monkeypatch.delenv("LOFAREXEC_CONTRACT_UNSET", raising=False)
        out = contract_setup.directory / "env.json"
        command = self.node(contract_setup, "env_node", textwrap.dedent(f"""\
            cmdlines = []
            for pid in (os.getpid(), os.getppid()):
                with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                    cmdlines.append(f.read().decode("utf-8", "replace"))
            open({str(out)!r}, "w").write(json.dumps({{"env": dict(os.environ),
                                                      "cmdlines": cmdlines}}))
            return 0"""))
        job = ComputeJob(contract_setup.hosts[0], command)
        self.run(contract_setup, [job], overrides={
            "remote": {"forward_environment":
                       "LOFAREXEC_CONTRACT_VALUE, LOFAREXEC_CONTRACT_UNSET"},
            "deploy": {"engine_ppath": f"{PACKAGE_ROOT}:/contract/ppath",
                       "engine_lpath": "/contract/lpath"}})
        assert job.results["state"] == "succeeded", job.results
        seen = json.loads(out.read_text())
        environment = seen["env"]
        assert environment["PYTHONPATH"].split(":")[:2] == [PACKAGE_ROOT, "/contract/ppath"]
        assert environment["LD_LIBRARY_PATH"].split(":")[0] == "/contract/lpath"
        assert environment["LOFAREXEC_CONTRACT_VALUE"] == "it $travels; 'as is'"
        assert "LOFAREXEC_CONTRACT_UNSET" not in environment
        assert "None" not in environment.values()
        assert "LOFAREXEC_TOKEN" not in environment  # the node takes it out once read
        assert all("LOFAREXEC_TOKEN" not in cmdline for cmdline in seen["cmdlines"])

    @pytest.mark.parametrize("code", [0, 1, 2, 255])
    def test_exit_codes(self, contract_setup: ContractSetup, code: int) -> None:
        command = self.node(contract_setup, "exit_node", "return int(args[0])")
        job = ComputeJob(contract_setup.hosts[1], command, [str(code)])
        error = self.run(contract_setup, [job])
        assert job.results["returncode"] == code
        assert job.results["state"] == ("succeeded" if code == 0 else "failed")
        assert error.is_set() == (code != 0)

    def test_missing_node_program_is_a_transport_error(self, contract_setup: ContractSetup) -> None:
        job = ComputeJob(contract_setup.hosts[0], "/no/such/node-program")
        self.run(contract_setup, [job])
        assert job.results["state"] == "transport_error", job.results
        assert job.results["reason"].endswith(MISSING_PROGRAM_REASON), job.results["reason"]
        assert job.results["returncode"] is None

    def test_node_starts_with_default_signal_handling(self, contract_setup: ContractSetup
                                                      ) -> None:
        """No signal ignored that a shell would not ignore: a node piping into ``head`` must
        die of SIGPIPE, not loop on EPIPE (Python, which most remote halves are, ignores it)."""
        job = ComputeJob(contract_setup.hosts[0], "/bin/sh -c 'grep ^SigIgn: /proc/self/status'")
        self.run(contract_setup, [job])
        assert job.results["state"] == "succeeded", job.results
        ignored = int(job.results["output"].split()[1], 16)
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            assert not ignored & (1 << (signum - 1)), f"{signum.name} is ignored in the node"

    def test_death_by_signal(self, contract_setup: ContractSetup) -> None:
        command = self.node(contract_setup, "signal_node", "os.kill(os.getpid(), signal.SIGKILL)")
        job = ComputeJob(contract_setup.hosts[0], command)
        self.run(contract_setup, [job])
        assert job.results["returncode"] == -signal.SIGKILL
        assert job.results["state"] == "failed"
        assert "signal 9" in job.results["reason"]

    def test_large_output_without_deadlock(self, contract_setup: ContractSetup) -> None:
        command = self.node(contract_setup, "chatty_node", textwrap.dedent("""\
            block = "x" * 65535 + "\\n"
            for _ in range(160):
                sys.stdout.write(block)
                sys.stderr.write(block)
            sys.stdout.write("OUT-END")
            sys.stderr.write("ERR-END")
            return 0"""))
        job = ComputeJob(contract_setup.hosts[0], command)
        self.run(contract_setup, [job])
        assert job.results["state"] == "succeeded", job.results.get("reason")
        assert job.results["output"].endswith("OUT-END")
        assert job.results["errors"].endswith("ERR-END")

    def test_max_per_node_over_four_hosts(self, contract_setup: ContractSetup) -> None:
        record = contract_setup.directory / "spans"
        record.mkdir(exist_ok=True)
        command = self.node(contract_setup, "span_node", textwrap.dedent(f"""\
            path = os.path.join({str(record)!r}, args[0])
            with open(path, "a") as out:
                fcntl.flock(out, fcntl.LOCK_EX)
                out.write("%s %f\\n" % (args[1], time.time()))
            time.sleep(0.8)  # long enough that slow launchers still overlap
            with open(path, "a") as out:
                fcntl.flock(out, fcntl.LOCK_EX)
                out.write("%s %f\\n" % (args[1], time.time()))
            return 0"""))
        hosts = contract_setup.hosts[:4]
        jobs = [ComputeJob(hosts[i % 4], command, [hosts[i % 4], f"job{i}"]) for i in range(40)]
        error = self.run(contract_setup, jobs, max_per_node=2)
        assert not error.is_set(), [job.results.get("reason") for job in jobs]
        for host in hosts:
            spans: dict[str, list[float]] = {}
            for line in (record / host).read_text().splitlines():
                name, stamp = line.split()
                spans.setdefault(name, []).append(float(stamp))
            assert len(spans) == 10
            assert _peak_overlap(spans.values()) == 2

    def test_log_records_arrive_under_host_and_recipe(self, contract_setup: ContractSetup,
                                                      caplog: pytest.LogCaptureFixture) -> None:
        command = self.node(contract_setup, "contract", 'self.logger.warning("hello %s", args[0])')
        jobs = [ComputeJob(host, command, [host]) for host in contract_setup.hosts[:4]]
        with caplog.at_level(logging.DEBUG):
            self.run(contract_setup, jobs)
        got = {(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("node.")}
        hosts = contract_setup.hosts[:4]
        assert got == {(f"node.{host}.contract", f"hello {host}") for host in hosts}

    def test_kill_leaves_no_process_behind(self, contract_setup: ContractSetup) -> None:
        command = self.node(contract_setup, "stubborn_node", textwrap.dedent("""\
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen(["sleep", "300"])
            self.logger.warning("started %d %d", os.getpid(), child.pid)
            time.sleep(300)
            return 0"""))
        hosts = contract_setup.hosts[:2]
        jobs = [ComputeJob(hosts[i % 2], command) for i in range(4)]
        started = _RecordWaiter("started", count=4)
        runners: list[JobRunner] = []
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                self.run(contract_setup, jobs, runner_box=runners)
            except PipelineQuit as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        with started.installed():
            thread.start()
            assert started.wait(60), "the nodes did not all start"
        runners[0].kill("contract kill")
        thread.join(30)
        assert outcome, "the run did not end with PipelineQuit"
        assert [job.results["state"] for job in jobs] == ["killed"] * 4
        for host, pids in started.pids():
            for pid in pids:
                assert self.wait_gone(host, pid, timeout=2.0), f"pid {pid} survived on {host}"


class _RecordWaiter(logging.Handler):
    """Collects node records containing a word; lets a test wait for a number of them."""

    def __init__(self, word: str, count: int) -> None:
        super().__init__(logging.DEBUG)
        self.word = word
        self.count = count
        self.records: list[logging.LogRecord] = []
        self.enough = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("node.") and self.word in record.getMessage():
            self.records.append(record)
            if len(self.records) >= self.count:
                self.enough.set()

    def wait(self, timeout: float) -> bool:
        return self.enough.wait(timeout)

    def installed(self) -> _Installed:
        return _Installed(self)

    def pids(self) -> Iterator[tuple[str, list[int]]]:
        for record in self.records:
            host = record.name.split(".")[1]
            yield host, [int(word) for word in record.getMessage().split()[1:]]


class _Installed:
    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.node_logger = logging.getLogger("node")

    def __enter__(self) -> None:
        self.level = self.node_logger.level
        self.node_logger.setLevel(logging.DEBUG)
        self.node_logger.addHandler(self.handler)

    def __exit__(self, *exc_info: object) -> None:
        self.node_logger.removeHandler(self.handler)
        self.node_logger.setLevel(self.level)


def _peak_overlap(spans: object) -> int:
    events = sorted([(span[0], 1) for span in spans] + [(span[1], -1) for span in spans])  # type: ignore[attr-defined]
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak

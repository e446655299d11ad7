"""lofarexec's contract suite, and what namespaces add, run for real against ``unshare``.

The fixtures (``lofarexec_run``, ``lofarexec_method``) come from lofarexec's pytest plugin,
enabled by ``-p lofarexec.testing.pytest_plugin`` in this package's ``pyproject.toml``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pytest

from lofarexec import ComputeJob
from lofarexec.errors import ConfigError
from lofarexec.testing import BackendContract, ContractSetup, procs

pytestmark = pytest.mark.slow


def host_pids(namespace_pid: int) -> list[int]:
    """This machine's pids of the processes that are ``namespace_pid`` in a PID namespace
    below ours (a job's pids, as its node script sees and logs them)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as status:
                line = next((text for text in status if text.startswith("NSpid:")), "")
        except OSError:
            continue  # gone while we looked
        levels = line.split()[1:]
        if len(levels) > 1 and int(levels[-1]) == namespace_pid:
            found.append(int(levels[0]))
    return found


class TestUnshareContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path: Path) -> ContractSetup:
        return ContractSetup(method="unshare", hosts=["node1", "node2", "node3", "node4"],
                             directory=tmp_path, python=sys.executable)

    def process_alive(self, host: str, pid: int) -> bool:
        return any(procs.running(found) for found in host_pids(pid))

    def wait_gone(self, host: str, pid: int, timeout: float) -> bool:
        return procs.wait_gone(host_pids(pid), timeout)

    def failing_open_overrides(self, setup: ContractSetup) -> dict[str, dict[str, str]]:
        return {"unshare": {"unshare": "/no/such/unshare"}}


@pytest.fixture
def lofarexec_method() -> str:
    return "unshare"


def test_each_job_has_its_hosts_name_and_its_own_processes(lofarexec_run):
    out = lofarexec_run.directory / "seen"
    out.mkdir()
    command = lofarexec_run.node("seen_node", f"""\
import socket
pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
open(os.path.join({str(out)!r}, args[0]), "w").write(
    json.dumps({{"hostname": socket.gethostname(), "pid": os.getpid(), "pids": pids}}))
return 0""")
    jobs = [ComputeJob(host, command, [host]) for host in ("node1", "node2")]
    error = lofarexec_run(jobs)
    assert not error.is_set(), [job.results.get("reason") for job in jobs]
    for host in ("node1", "node2"):
        seen = json.loads((out / host).read_text())
        assert seen["hostname"] == host
        assert seen["pids"] == [1, seen["pid"]]  # the wrapper and the node: nothing else


def test_an_orphan_dies_with_its_job(lofarexec_run):
    marker = f"{secrets.randbelow(10**6) + 10**6}.5"  # a sleep of ~12 days nobody else runs
    command = lofarexec_run.node("orphan_node", f"""\
subprocess.Popen(["setsid", "sleep", {marker!r}], start_new_session=True)
return 0""")
    job = ComputeJob("node1", command)
    lofarexec_run([job])
    assert job.results["state"] == "succeeded", job.results
    leftovers = [pid for pid in procs.pids_with_cmdline(f"sleep {marker}")
                 if procs.running(pid)]
    assert procs.wait_gone(leftovers, 5.0), f"the orphan survived its job: {leftovers}"


def test_net_namespace_is_refused_in_one_line(lofarexec_run):
    lofarexec_run.config = "[unshare]\nnamespaces = pid, net\n"
    job = ComputeJob("node1", "/bin/true")
    with pytest.raises(ConfigError) as caught:
        lofarexec_run([job])
    message = str(caught.value)
    assert "[unshare]" in message and "namespaces" in message and "net is not possible" in message
    assert "\n" not in message

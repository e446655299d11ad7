"""Network faults on hosts in namespaces: unreachable, silent, wrong host key, link pulled.

Each test: every job has exactly one final state and reason in the journal, no process of the
run is left on any host, the recipe's exit status says the run had errors (its error Event).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.faults.runs import FaultRun, stop, wait_for

pytestmark = pytest.mark.slow


def test_a_host_unreachable_from_the_start_is_quarantined(netns_bed, tmp_path):
    netns_bed.pull_link("node2")
    jobs = [(host, "/bin/true") for host in ("node1", "node2") for _ in range(4)]
    run = FaultRun(netns_bed, tmp_path, jobs, remote="host_failures = 2\n")
    assert run.run() == 1
    assert run.states() == {"succeeded": 4, "transport_error": 4}
    for entry in run.results().values():  # its SYN had no answer: one connect timeout
        if entry["host"] == "node2":
            assert entry["reason"].startswith(
                "host node2 quarantined after a connect timeout (no answer to a connection "
                "attempt): node2: the connection failed: ssh: connect to host 10.200.0.3 port "
                "22: Connection timed out"), entry["reason"]
    assert run.stderr.count("its queued jobs end as transport_error") == 1  # 1 warning
    netns_bed.restore_link("node2")
    run.assert_nothing_left()


LISTENER = """\
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 22))
listener.listen(64)
print("listening", flush=True)
kept = []
while True:
    kept.append(listener.accept()[0])
    print("accepted", flush=True)
"""


def test_a_host_that_accepts_and_never_answers_costs_one_connect_timeout(netns_bed, tmp_path):
    """Port 22 of node2 takes TCP connections and never speaks: 10 jobs there, 2 at once (one
    host agent), cost 1 connection attempt in all, then node2 is quarantined; not one per
    group of jobs, nor ``host_failures`` (5 here). node1's jobs run as ever."""
    netns_bed.stop_sshd("node2")
    script = tmp_path / "silent.py"
    script.write_text(LISTENER)
    accepted = tmp_path / "accepted"
    with accepted.open("w") as out:
        listener = subprocess.Popen(["ip", "netns", "exec", netns_bed.namespace("node2"),
                                     sys.executable, str(script)], stdout=out,
                                    stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "listening" in accepted.read_text(), "listener", listener)
        jobs = [("node2", "/bin/true")] * 10 + [("node1", "/bin/true")] * 2
        run = FaultRun(netns_bed, tmp_path, jobs, remote="host_failures = 5\n")
        assert run.run() == 1
    finally:
        stop(listener)
    assert accepted.read_text().count("accepted") == 1
    assert run.states() == {"transport_error": 10, "succeeded": 2}
    lost = [entry for entry in run.results().values() if entry["host"] == "node2"]
    assert all(entry["reason"].startswith("host node2 quarantined after a connect timeout")
               for entry in lost), lost[0]
    assert "Connection timed out during banner exchange" in lost[0]["reason"]
    assert sum(entry["attempts"] for entry in lost) == 2  # the first group; no probe
    assert run.stderr.count("its queued jobs end as transport_error") == 1  # 1 warning
    run.assert_nothing_left()


def test_a_wrong_host_key_is_a_transport_error_naming_the_key(netns_bed, tmp_path):
    lines = netns_bed.known_hosts.read_text().splitlines()
    keys = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    node1, node2 = (netns_bed.address(name) for name in ("node1", "node2"))
    netns_bed.known_hosts.write_text(f"{node1} {keys[node1]}\n{node2} {keys[node1]}\n")
    jobs = [(host, "/bin/true") for host in ("node1", "node2") for _ in range(2)]
    run = FaultRun(netns_bed, tmp_path, jobs, remote="host_failures = 1\n")
    assert run.run() == 1
    assert run.states() == {"succeeded": 2, "transport_error": 2}
    lost = [entry for entry in run.results().values() if entry["host"] == "node2"]
    assert all("Host key verification failed" in entry["reason"] for entry in lost), lost
    run.assert_nothing_left()


def test_a_link_pulled_mid_job_ends_it_as_a_transport_error(netns_bed, tmp_path):
    """ServerAlive notices the silent link after about 3 alive intervals; the job on the
    far side is gone once the link is back (its session's sshd hears the reset)."""
    pid_file = tmp_path / "pid"
    jobs = [("node2", f"/bin/sh -c 'echo $$ > {pid_file}; exec sleep 120'"),
            ("node1", "/bin/true"), ("node1", "/bin/true")]
    run = FaultRun(netns_bed, tmp_path, jobs, remote="retries = 0\n")
    process = run.start()
    try:
        wait_for(pid_file.exists, "pid file", process)
        netns_bed.pull_link("node2")
        assert process.wait(120) == 1
    finally:
        stop(process)
        netns_bed.restore_link("node2")
    assert run.states() == {"succeeded": 2, "transport_error": 1}
    assert "node2: the host's agent or its connection ended" in run.results()[0]["reason"]
    run.assert_nothing_left()


def test_a_host_blip_mid_run_with_retries_loses_no_job(netns_bed, tmp_path):
    """node2 crashes (sshd and everything on it killed) for 6 s while its jobs run: with
    ``retries`` and enough ``host_failures`` its jobs wait while it is paused and all succeed."""
    jobs = [(host, "/bin/sh -c 'sleep 0.3'") for host in ("node1", "node2") for _ in range(12)]
    run = FaultRun(netns_bed, tmp_path, jobs, remote="retries = 6\nhost_failures = 6\n")
    process = run.start()
    try:
        wait_for(lambda: len(run.ended_lines()) >= 2, "two ended jobs", process)
        netns_bed.stop_sshd("node2")
        outage = threading.Timer(6.0, netns_bed.start_sshd, ("node2",))  # the fault is 6 s long
        outage.start()
        assert process.wait(120) == 0, run.stderr
        outage.join()
    finally:
        stop(process)
        netns_bed.start_sshd("node2")
    assert run.states() == {"succeeded": 24}
    assert any(entry["attempts"] > 1 for entry in run.results().values()
               if entry["host"] == "node2"), "the blip hit no job"
    run.assert_nothing_left()

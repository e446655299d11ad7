"""The host agent (lofarexec.hostprograms.host_agent) alone: frames in, processes, frames out.

Run here as the backends run it on a host (``python3 -I -S -c <inline program>``),
with pipes for the channel, so every guarantee is checked without sshd in the way.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lofarexec.backend import LaunchRequest
from lofarexec.testing.contract import HOSTILE_ARGUMENTS
from lofarexec.transport.agent_frames import PING, FrameReader, encode_kill, encode_start
from lofarexec.transport.wrapper import inline_program
from tests.helpers import wait_gone


class AgentProcess:
    """A running agent and the frames it has sent, by job number."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", inline_program("host_agent.py"), *arguments],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = FrameReader()
        self.frames: list[tuple[bytes, int, bytes]] = []

    def start(self, number: int, *argv: str, grace: float = 1.0, **environment: str) -> None:
        request = LaunchRequest(job_id=number, host="here", argv=argv, environment=environment,
                                token="secret")
        self.send(encode_start(number, request, grace))

    def send(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def kill(self, number: int) -> None:
        self.send(encode_kill(number))

    def wait_for(self, kind: bytes, number: int, timeout: float = 10.0) -> bytes:
        """The payload of the first ``kind`` frame of job ``number``, waiting for it."""
        if kind == b"H":
            return self._wait(lambda: self._reader.hello, timeout)
        deadline = time.monotonic() + timeout
        while True:
            for seen_kind, seen_number, payload in self.frames:
                if (seen_kind, seen_number) == (kind, number):
                    return payload
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind!r} frame for job {number}; got {self.frames}"
            self._read(left)

    def output(self, kind: bytes, number: int) -> bytes:
        return b"".join(p for k, n, p in self.frames if (k, n) == (kind, number))

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.process.stdout.fileno(), 1 << 20)
        assert chunk, f"the agent ended: {self.process.stderr.read().decode()}"
        self.frames += self._reader.feed(chunk)

    def _wait(self, done, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            self._read(left)
        return b""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def agent() -> Iterator[AgentProcess]:
    running = AgentProcess()
    yield running
    running.close()


def test_says_hello_then_runs_a_job_with_its_output_and_status(agent) -> None:
    agent.wait_for(b"H", 0)
    agent.start(1, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
    assert agent.wait_for(b"X", 1) == b"3"
    assert int(agent.wait_for(b"P", 1)) > 1  # its pid: the control node's last resort
    assert agent.output(b"O", 1) == b"out\n" and agent.output(b"E", 1) == b"err\n"
    kinds = [kind for kind, number, _ in agent.frames if number == 1]
    assert kinds[-1] == b"X"  # after all of its output


def test_argv_and_environment_arrive_byte_for_byte(agent) -> None:
    script = "import os, sys; sys.stdout.buffer.write(b'\\0'.join(map(os.fsencode, sys.argv[1:]))" \
             " + b'\\1' + os.environb[b'ODD'] + b'\\1' + os.environb[b'LOFAREXEC_TOKEN'])"
    agent.start(1, sys.executable, "-c", script, *HOSTILE_ARGUMENTS, ODD="it $x; 'y'\n\u2713")
    assert agent.wait_for(b"X", 1) == b"0", agent.output(b"E", 1)
    argv, odd, token = agent.output(b"O", 1).split(b"\1")
    assert argv.split(b"\0") == [word.encode() for word in HOSTILE_ARGUMENTS]
    assert odd == "it $x; 'y'\n\u2713".encode() and token == b"secret"


def test_a_program_that_cannot_start_is_said_so(agent) -> None:
    agent.start(1, "/no/such/program")
    assert b"/no/such/program" in agent.wait_for(b"F", 1)
    agent.start(2, "/bin/true")  # the agent goes on
    assert agent.wait_for(b"X", 2) == b"0"


def test_a_bare_program_name_is_searched_in_the_jobs_own_path(agent, tmp_path) -> None:
    for name, status in (("one", 4), ("two", 5)):  # each job's PATH, not the agent's
        folder = tmp_path / name
        folder.mkdir()
        program = folder / "lofarexec-probe"
        program.write_text(f"#!/bin/sh\nexit {status}\n")
        program.chmod(0o755)
    agent.start(1, "lofarexec-probe", PATH=str(tmp_path / "one"))
    assert agent.wait_for(b"X", 1) == b"4", agent.frames
    agent.start(2, "lofarexec-probe", PATH=str(tmp_path / "two"))
    assert agent.wait_for(b"X", 2) == b"5", agent.frames


def test_exit_by_signal_is_a_negative_status(agent) -> None:
    agent.start(1, "/bin/sh", "-c", "kill -9 $$")
    assert agent.wait_for(b"X", 1) == b"-9"


STUBBORN = ("import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); child = subprocess.Popen(['sleep', '300']); "
            "print(os.getpid(), child.pid, flush=True); time.sleep(300)")


def started_pids(agent: AgentProcess, number: int) -> list[int]:
    deadline = time.monotonic() + 10
    while not agent.output(b"O", number).endswith(b"\n"):
        agent._read(max(0.0, deadline - time.monotonic()))
        assert time.monotonic() < deadline, "the job did not say its pids"
    return [int(word) for word in agent.output(b"O", number).split()]


def test_kill_terms_then_kills_the_whole_group(agent) -> None:
    agent.start(1, sys.executable, "-c", STUBBORN, grace=0.3)
    pids = started_pids(agent, 1)
    began = time.monotonic()
    agent.kill(1)
    assert agent.wait_for(b"X", 1) == b"-9"  # it ignored TERM
    assert time.monotonic() - began < 2.0
    assert all(wait_gone(pid, 1.0) for pid in pids)


def test_what_a_job_leaves_in_its_group_dies_with_it(agent) -> None:
    agent.start(1, "/bin/sh", "-c", "sleep 300 & echo $!")
    assert agent.wait_for(b"X", 1) == b"0"
    assert wait_gone(int(agent.output(b"O", 1)), 2.0)


@pytest.mark.parametrize("how", ["end of stdin", "SIGTERM", "SIGHUP"])
def test_losing_the_control_node_kills_every_job_then_the_agent_exits(agent, how) -> None:
    agent.start(1, sys.executable, "-c", STUBBORN, grace=0.3)
    agent.start(2, sys.executable, "-c", STUBBORN, grace=0.3)
    pids = started_pids(agent, 1) + started_pids(agent, 2)
    if how == "end of stdin":
        agent.process.stdin.close()
    else:
        agent.process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGHUP)
    assert agent.process.wait(timeout=5) == 0
    assert all(wait_gone(pid, 1.0) for pid in pids)


def test_output_under_back_pressure_arrives_whole_and_kills_still_land(agent) -> None:
    # 12 MiB from one job while nobody reads: the agent stops reading it, not its requests.
    agent.start(1, "/bin/sh", "-c", "head -c 12582912 /dev/zero; echo END")
    agent.start(2, sys.executable, "-c", STUBBORN, grace=0.3)
    agent.kill(2)
    assert agent.wait_for(b"X", 2) in (b"-9", b"-15")
    assert agent.wait_for(b"X", 1, timeout=30) == b"0"
    assert len(agent.output(b"O", 1)) == 12582912 + 4


def test_silence_from_the_control_node_kills_every_job_then_the_agent_exits() -> None:
    """A pulled cable shows no EOF for a long time: past its limit the agent gives up."""
    agent = AgentProcess("0.5")
    try:
        agent.start(1, sys.executable, "-c", STUBBORN, grace=0.3)
        pids = started_pids(agent, 1)
        assert agent.process.wait(timeout=5) == 0
        assert all(wait_gone(pid, 1.0) for pid in pids)
        assert b"no word from the control node for 0.5 s" in agent.process.stderr.read()
    finally:
        agent.close()


def test_pings_keep_the_agent_and_its_jobs_alive() -> None:
    agent = AgentProcess("0.5")
    try:
        agent.start(1, "/bin/sh", "-c", "sleep 1.5; echo slept")
        for _ in range(20):  # a ping every 0.1 s, for longer than the limit thrice over
            agent.send(PING)
            time.sleep(0.1)
        assert agent.wait_for(b"X", 1) == b"0" and agent.output(b"O", 1) == b"slept\n"
        assert agent.process.poll() is None
    finally:
        agent.close()

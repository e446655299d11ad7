"""The host agent's second route to its jobs' statuses: the file it keeps on its host, and
:func:`lofarexec.transport.fetch_statuses` reading it (the stalled-link cases themselves run on
the sshd test bed: tests/backends/test_stalled_status.py)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lofarexec.backend import LaunchRequest
from lofarexec.transport import fetch_statuses, stalled_note, status_marker
from lofarexec.transport.agent_frames import FrameReader, encode_start
from lofarexec.transport.orphans import status_fetch_command
from lofarexec.transport.wrapper import inline_program

AGENT = [sys.executable, "-I", "-S", "-c", inline_program("host_agent.py"), "0"]


def start_frame(number: int, *argv: str) -> bytes:
    return encode_start(number, LaunchRequest(number, "here", argv, {}, token="t"), 0.3)


class Agent:
    """A host agent run straight from here with its own TMPDIR; frames in, frames out."""

    def __init__(self, tmp_path: Path, marker: str) -> None:
        self.process = subprocess.Popen([*AGENT, marker], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE,
                                        env={**os.environ, "TMPDIR": str(tmp_path)})
        self.frames = FrameReader()

    def send(self, frame: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(frame)
        self.process.stdin.flush()

    def wait_for(self, kind: bytes, number: int) -> bytes:
        """The payload of the first frame ``kind`` about job ``number`` (earlier ones dropped)."""
        assert self.process.stdout is not None
        pending: list[tuple[bytes, int, bytes]] = []
        while True:
            for frame in pending:
                if frame[:2] == (kind, number):
                    return frame[2]
            data = os.read(self.process.stdout.fileno(), 65536)
            assert data, f"the agent ended before its {kind!r} frame about job {number}"
            pending = self.frames.feed(data)

    def end(self) -> int:
        """End-of-file on its stdin, as when its link ends; its exit status."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.read()
        self.process.stdout.close()
        return self.process.wait(timeout=30)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[str], Agent]]:
    """Agents started with a marker; each stopped after the test, whatever happened."""
    made: list[Agent] = []

    def make(marker: str) -> Agent:
        made.append(Agent(tmp_path, marker))
        return made[-1]

    yield make
    for agent in made:
        if agent.process.poll() is None:
            agent.process.kill()
        for pipe in (agent.process.stdin, agent.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        agent.process.wait()


def run_here(tmp_path: Path) -> Callable[[str, float], str]:
    """A fresh "session" on this machine, with the agent's TMPDIR."""
    def run(command: str, seconds: float) -> str:
        done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True,
                              timeout=seconds, env={**os.environ, "TMPDIR": str(tmp_path)})
        return done.stdout.decode()
    return run


def test_the_agent_keeps_the_statuses_of_ended_jobs_not_of_jobs_it_killed(agents, tmp_path):
    marker = status_marker()
    agent = agents(marker)
    agent.send(start_frame(1, "/bin/sh", "-c", "exit 3"))
    assert agent.wait_for(b"X", 1) == b"3"
    agent.send(start_frame(2, "sleep", "300"))
    agent.wait_for(b"P", 2)
    assert agent.end() == 0  # the link ended with job 2 running: the agent killed it
    kept = tmp_path / f"lofarexec-agent-{marker}"
    assert kept.read_text() == "1 3\n"  # job 2's status (a TERM from its agent) is not its own
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert fetch_statuses("here", marker, [1, 2], run_here(tmp_path), timeout=30) == {1: 3}
    assert not kept.exists()  # the reader removes it


def test_a_clean_end_removes_the_statuses_file(agents, tmp_path):
    marker = status_marker()
    agent = agents(marker)
    agent.send(start_frame(1, "/bin/true"))
    assert agent.wait_for(b"X", 1) == b"0"
    assert (tmp_path / f"lofarexec-agent-{marker}").exists()
    assert agent.end() == 0  # every status was heard, then the link closed
    assert list(tmp_path.iterdir()) == []


def test_statuses_that_cannot_be_fetched_leave_the_jobs_lost_with_a_warning(tmp_path, caplog):
    def unreachable(command: str, seconds: float) -> str:
        raise OSError("ssh: connect to host node9 port 22: Connection timed out")

    with caplog.at_level(logging.WARNING, "lofarexec.transport.orphans"):
        assert fetch_statuses("node9", status_marker(), [4], unreachable, timeout=1) == {}
    assert "node9: the link to the host's agent ended and its jobs' statuses could not be " \
           "fetched (ssh: connect to host node9 port 22: Connection timed out): 1 job(s)" \
           in caplog.text
    assert fetch_statuses("here", status_marker(), [4], run_here(tmp_path), timeout=30) == {}


def test_only_whole_status_lines_of_the_jobs_asked_for_count(tmp_path):
    marker = status_marker()
    (tmp_path / f"lofarexec-agent-{marker}").write_text("1 0\n2 -9\n3 garbled\n4 1\n5")
    found = fetch_statuses("here", marker, [2, 3, 4, 5], run_here(tmp_path), timeout=30)
    assert found == {2: -9, 4: 1}
    assert stalled_note("node3") == "status fetched after the link to node3 stalled"


def test_a_marker_that_could_reach_the_shell_is_refused():
    with pytest.raises(ValueError, match="not a status marker"):
        status_fetch_command("x; rm -rf ~")

"""AgentClient: a host agent reached through a local program's pipes, as the ssh backend uses
it, here with the agent started straight from this machine's Python (no ssh in the way)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.errors import BackendError
from lofarexec.transport.agent import AgentClient
from lofarexec.transport.agent_frames import HEADER, PING, FrameReader, Pinger
from lofarexec.transport.agent_loop import AgentLoop
from lofarexec.transport.wrapper import inline_program
from tests.helpers import Reports, wait_gone

AGENT = [sys.executable, "-I", "-S", "-c", inline_program("host_agent.py")]
#: Ignores SIGTERM, then tells the test its pid on the port given as its argument.
STUBBORN = ("import os, signal, socket, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
            "; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).sendall(b'%d' % "
            "os.getpid()); time.sleep(300)")


@pytest.fixture
def stubborn() -> Iterator[tuple[tuple[str, ...], Callable[[], int]]]:
    """A STUBBORN job's argv, and a call that waits until it has started: its pid."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def started() -> int:
            link, _ = listener.accept()
            with link:
                return int(link.makefile().read())

        yield (sys.executable, "-c", STUBBORN, str(listener.getsockname()[1])), started


def request(job_id: int, *argv: str) -> LaunchRequest:
    return LaunchRequest(job_id=job_id, host="here", argv=argv, environment={}, token="t")


@pytest.fixture
def clients() -> Iterator[Callable[..., AgentClient]]:
    made: list[AgentClient] = []

    def make(argv=AGENT, **options) -> AgentClient:
        options.setdefault("kill_grace", 0.3)
        client = AgentClient("here", argv, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
        client.close()  # safe twice
        assert client._process.poll() is not None


def test_many_jobs_through_one_agent(clients) -> None:
    client, reports = clients(), Reports()
    for job_id in range(200):
        client.start(request(job_id, "/bin/sh", "-c", f"echo {job_id}; exit {job_id % 3}"),
                     reports(job_id))
    for job_id in range(200):
        assert reports.wait(job_id) == Outcome(job_id % 3, output=f"{job_id}\n")
    assert reports.each_once()


def test_what_cannot_start_fails_alone(clients) -> None:
    client, reports = clients(), Reports()
    client.start(request(1, "/no/such/node"), reports(1))
    client.start(request(2, "/bin/echo", "a\0b"), reports(2))
    client.start(request(3, "/bin/true"), reports(3))
    assert "here: cannot start '/no/such/node'" in reports.wait(1).transport_error
    assert "holds a NUL byte" in reports.wait(2).transport_error
    assert reports.wait(3) == Outcome(0)


def test_kill_reaches_a_job_that_ignores_term(clients, stubborn) -> None:
    client, reports = clients(), Reports()
    argv, started = stubborn
    handle = client.start(request(1, *argv), reports(1))
    client.start(request(2, "/bin/sh", "-c", "echo started; exec sleep 300"), reports(2))
    pid = started()
    began = time.monotonic()
    handle.kill()
    handle.kill()
    assert reports.wait(1).returncode == -9
    assert time.monotonic() - began < 2.0 and wait_gone(pid, 0.5)
    client.close()  # kills the other one and waits for its report
    assert reports.wait(2, timeout=0) == Outcome(-15, output="started\n")


def test_a_program_that_never_starts_the_agent_fails_its_jobs_in_its_words(clients) -> None:
    reports = Reports()
    client = clients(["/bin/sh", "-c", "echo 'no route to node9' >&2; exit 255"])
    client.start(request(1, "/bin/true"), reports(1))
    assert reports.wait(1).transport_error == (
        "here: the connection failed: no route to node9")
    assert not client.usable()
    client.start(request(2, "/bin/true"), reports(2))  # a late job is told the same
    assert reports.wait(2).transport_error == reports.wait(1).transport_error


def test_a_killed_agent_fails_its_jobs_and_its_orphans_are_killed(clients, stubborn) -> None:
    killed: list[list[int]] = []

    def kill_orphans(pids: list[int]) -> bool:
        killed.append(pids)
        for pid in pids:
            os.killpg(pid, signal.SIGKILL)
        return True

    client, reports = clients(kill_orphans=kill_orphans), Reports()
    argv, started = stubborn
    client.start(request(1, *argv), reports(1))
    job_pid = started()  # its pid frame came before: the agent sends it once spawned
    os.kill(client._process.pid, signal.SIGKILL)  # here the agent is the local program itself
    reason = reports.wait(1).transport_error
    assert reason.startswith("here: the host's agent or its connection ended (status -9)")
    assert killed == [[job_pid]] and wait_gone(job_pid, 2.0)


def test_client_and_agent_ping_each_other_while_a_job_says_nothing(clients) -> None:
    pinger = Pinger(0.1)  # each side gives up on the other after 0.4 s of silence
    client = clients([*AGENT, f"{pinger.silence_limit:g}"], pinger=pinger)
    reports = Reports()
    client.start(request(1, "/bin/sh", "-c", "sleep 1.2; echo slept"), reports(1))
    assert reports.wait(1) == Outcome(0, output="slept\n")


# -- what the agent says back: its pings, a garbled stream, silence ---------------------------
def test_the_frame_reader_drops_pings_and_takes_a_hello_in_pieces() -> None:
    reader = FrameReader()
    stream = HEADER.pack(b"H", 0, 1) + b"1" + PING + HEADER.pack(b"X", 7, 1) + b"0"
    frames = [frame for byte in range(len(stream)) for frame in reader.feed(stream[byte:byte + 1])]
    assert reader.hello and frames == [(b"X", 7, b"0")]


@pytest.mark.parametrize("stream, said", [
    (b"Welcome to node9!\n" + HEADER.pack(b"H", 0, 1) + b"1",
     "the host printed 'Welcome to node9!\\nH\\x00"),
    (b"Welcome to node9!\n", "before the agent started: a login script writing to standard "
     "output? Make it print only for interactive shells"),
    (b"H\0\0\0\1", "the host printed 'H\\x00\\x00\\x00\\x01' before the agent started"),
    (HEADER.pack(b"H", 0, 1) + b"1" + b"Last login: today\n",
     "the host agent's output is garbled: a frame of 1819240297 bytes (at most 1048576) near "
     "'Last login: today\\n'"),
])
def test_a_stream_that_cannot_be_the_agents_is_an_error_saying_what_came(stream, said) -> None:
    with pytest.raises(BackendError) as raised:
        FrameReader().feed(stream)
    assert said in str(raised.value)


@pytest.mark.slow
def test_a_login_script_that_prints_fails_the_jobs_in_words_saying_so(clients) -> None:
    reports = Reports()
    client = clients(["/bin/sh", "-c", 'echo "Welcome to node9"; exec "$@"', "sh", *AGENT])
    client.start(request(1, "/bin/true"), reports(1))
    reason = reports.wait(1).transport_error
    assert reason.startswith("here: the host printed 'Welcome to node9\\n") and (
        "a login script writing to standard output?" in reason), reason
    client.start(request(2, "/bin/true"), reports(2))  # a late job is told the same
    assert reports.wait(2).transport_error == reason


@pytest.mark.slow
def test_a_frozen_agent_fails_its_jobs_after_the_silence_limit(clients, stubborn) -> None:
    """Here the agent is the local program itself: stopped, it says nothing, yet its pipes
    stay open (as a frozen host's connection does)."""
    pinger = Pinger(0.2)  # both sides give up after 0.8 s of silence
    client = clients([*AGENT, f"{pinger.silence_limit:g}"], pinger=pinger)
    reports = Reports()
    argv, started = stubborn
    client.start(request(1, *argv), reports(1))
    job_pid = started()
    os.kill(client._process.pid, signal.SIGSTOP)
    try:
        reason = reports.wait(1).transport_error
    finally:
        os.killpg(job_pid, signal.SIGKILL)  # its agent, frozen, cannot
    assert reason.startswith("here: the host's agent was silent for 0.8 s"), reason
    assert not client.usable()


def test_an_agent_holds_two_descriptors_here(clients) -> None:
    """Its program's stdin and stdout are one socket, its stderr a pipe (issue 17: at most 3
    descriptors per host)."""
    loop = AgentLoop()
    try:
        warm = clients(loop=loop)  # the loop's own descriptors (selector, wake-up) come first
        warm.launch()
        first = Reports()
        warm.start(request(1, "/bin/true"), first(1))
        assert first.wait(1) == Outcome(0)
        before = len(os.listdir("/proc/self/fd"))
        client, reports = clients(loop=loop), Reports()
        client.launch()
        client.start(request(2, "/bin/true"), reports(2))
        assert reports.wait(2) == Outcome(0)
        assert len(os.listdir("/proc/self/fd")) - before == 2
        client.close()
        warm.close()
        assert len(os.listdir("/proc/self/fd")) < before
    finally:
        loop.close()

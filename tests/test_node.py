"""The node side: real node scripts in subprocesses, logging to a real LogServer over TCP."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lofarexec import node as node_module
from lofarexec.channel.logserver import LogServer
from lofarexec.channel.protocol import ENV_HOST, ENV_JOB_ID, ENV_TOKEN, ENV_TOKEN_STDIN
from lofarexec.node import LOFARnode, _ChannelHandler

REPO = Path(__file__).resolve().parent.parent
HOST = "lce001"

# The seed's example node script, verbatim.
SEED_SCRIPT = """\
import sys
from lofarpipe.support.lofarnode import LOFARnode

class example_parallel(LOFARnode):
    def run(self, *args):
        for arg in args:
            self.logger.info("Received %s as argument" % arg)
        return 0

if __name__ == "__main__":
    sys.exit(example_parallel(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
"""


def write_node(tmp_path: Path, body: str, name: str = "testnode") -> Path:
    """A node script whose ``run`` has ``body``, started the seed's way."""
    path = tmp_path / f"{name}.py"
    path.write_text(
        "import sys\nfrom lofarexec.node import LOFARnode\n\n"
        f"class {name}(LOFARnode):\n    def run(self, *args):\n"
        + textwrap.indent(textwrap.dedent(body), " " * 8)
        + f"\n\nsys.exit({name}(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))\n"
    )
    return path


def node_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOFAREXEC_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


def run_node(
    script: Path, address: tuple[str, int], *args: str, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    host, port = address
    return subprocess.run(
        [sys.executable, str(script), host, str(port), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def server() -> Iterator[LogServer]:
    with LogServer(recipe_name="example_parallel") as log_server:
        yield log_server


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def node_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("node.")]


def job_env(server: LogServer, job_id: int = 1) -> dict[str, str]:
    token = server.register_job(job_id, HOST)
    return node_env(**{ENV_JOB_ID: str(job_id), ENV_TOKEN: token, ENV_HOST: HOST})


def test_seed_script_runs_unchanged(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "example_parallel.py"
    script.write_text(SEED_SCRIPT)
    result = run_node(script, server.address, "example_argument", env=job_env(server))
    assert result.returncode == 0, result.stderr
    # The node waited for the server to read everything: no wait needed before counting.
    assert server.records_received(1) == 1
    server.job_exited(1)
    assert server.wait_job_closed(1, timeout=5)
    (record,) = node_records(captured)
    assert record.name == "node.lce001.example_parallel"
    assert record.getMessage() == "Received example_argument as argument"
    assert record.levelno == logging.INFO
    assert result.stderr == ""
    assert not [r for r in captured.records if r.levelno >= logging.WARNING]


def test_records_keep_level_time_and_order(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(
        tmp_path,
        """\
        import time
        self.logger.debug("first %d", 1)
        before = time.time()
        self.logger.warning("second")
        self.logger.error("stamped %r", before)
        return 7
        """,
    )
    result = run_node(script, server.address, env=job_env(server))
    assert result.returncode == 7, result.stderr
    first, second, third = node_records(captured)
    assert [r.getMessage() for r in (first, second)] == ["first 1", "second"]
    assert [r.levelname for r in (first, second, third)] == ["DEBUG", "WARNING", "ERROR"]
    assert {r.name for r in (first, second, third)} == {"node.lce001.testnode"}
    stamped = float(third.getMessage().split()[1])
    assert stamped <= third.created < stamped + 5


def test_token_on_stdin_leaves_the_rest_of_stdin_to_run(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(
        tmp_path,
        """\
        import os
        self.logger.info("stdin: %s", sys.stdin.read().strip())
        self.logger.info("token in env: %s", "LOFAREXEC_TOKEN" in os.environ)
        """,
    )
    token = server.register_job(4, HOST)
    env = node_env(**{ENV_JOB_ID: "4", ENV_TOKEN_STDIN: "1", ENV_HOST: HOST})
    result = run_node(script, server.address, env=env, stdin=f"{token}\nrest of input\n")
    assert result.returncode == 0, result.stderr
    messages = [r.getMessage() for r in node_records(captured)]
    assert messages == ["stdin: rest of input", "token in env: False"]
    assert token not in result.stderr


def test_token_is_removed_from_the_environment(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(tmp_path, 'self.logger.info("%s", os.environ.get("LOFAREXEC_TOKEN"))')
    script.write_text("import os\n" + script.read_text())
    result = run_node(script, server.address, env=job_env(server))
    assert result.returncode == 0, result.stderr
    assert [r.getMessage() for r in node_records(captured)] == ["None"]


def test_no_token_logs_to_stderr_and_still_runs(tmp_path: Path) -> None:
    script = write_node(tmp_path, 'self.logger.info("did the work on %s", args[0])\nreturn 3')
    result = run_node(script, ("127.0.0.1", 1), "x.MS", env=node_env(**{ENV_HOST: HOST}))
    assert result.returncode == 3
    assert "INFO    node.lce001.testnode: did the work on x.MS" in result.stderr
    assert "log server" not in result.stderr  # run by hand: nothing to complain about


def test_unreachable_master_is_reported_once(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    script = write_node(tmp_path, 'self.logger.info("one")\nself.logger.info("two")')
    env = node_env(**{ENV_JOB_ID: "1", ENV_TOKEN: "t" * 32, ENV_HOST: HOST})
    result = run_node(script, address, env=env)
    assert result.returncode == 0
    assert result.stderr.count("cannot reach the log server") == 1
    assert "node.lce001.testnode: one" in result.stderr
    assert "node.lce001.testnode: two" in result.stderr


def test_exception_in_run_is_logged_with_traceback(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(tmp_path, 'raise ValueError("kaboom")')
    result = run_node(script, server.address, env=job_env(server))
    assert result.returncode == 1
    (record,) = node_records(captured)
    assert record.levelno == logging.ERROR and "run() failed" in record.getMessage()
    assert record.exc_text is not None and record.exc_text.startswith("Traceback")
    assert "ValueError: kaboom" in record.exc_text


def test_forked_child_does_not_write_on_the_parent_channel(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(
        tmp_path,
        """\
        import os
        pid = os.fork()
        if pid == 0:
            self.logger.info("from the child")
            os._exit(0)
        os.waitpid(pid, 0)
        self.logger.info("from the parent")
        """,
    )
    result = run_node(script, server.address, env=job_env(server))
    assert result.returncode == 0, result.stderr
    assert [r.getMessage() for r in node_records(captured)] == ["from the parent"]
    assert "node.lce001.testnode: from the child" in result.stderr


def test_wrong_token_is_refused_and_node_still_exits(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    server.register_job(1, HOST)
    script = write_node(tmp_path, 'self.logger.info("ignored")\nreturn 5')
    env = node_env(**{ENV_JOB_ID: "1", ENV_TOKEN: "0" * 32, ENV_HOST: HOST})
    result = run_node(script, server.address, env=env)
    assert result.returncode == 5
    assert node_records(captured) == []
    assert server.records_received(1) == 0
    warnings = [r.getMessage() for r in captured.records if r.name == "lofarexec.channel.logserver"]
    assert any("wrong token for job 1" in w for w in warnings)


def test_many_threads_log_without_interleaving(
    tmp_path: Path, server: LogServer, captured: pytest.LogCaptureFixture
) -> None:
    script = write_node(
        tmp_path,
        """\
        import threading
        def work(n):
            for i in range(50):
                self.logger.info("thread %d record %d %s", n, i, "x" * 2000)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        """,
    )
    result = run_node(script, server.address, env=job_env(server))
    assert result.returncode == 0, result.stderr
    assert server.records_received(1) == 400
    assert not [r for r in captured.records
                if r.name == "lofarexec.channel.logserver" and r.levelno > 20]


# --- in-process unit tests --------------------------------------------------------------------


def test_node_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HOST, "lce042")

    class example_parallel(LOFARnode):  # the seed's lower-case class name
        pass

    node = example_parallel("head", "5000")
    assert (node.loghost, node.logport, node.outputs) == ("head", 5000, {})
    assert node.logger.name == "node.lce042.example_parallel"
    assert node.logger.propagate is False and node.logger.level == logging.DEBUG
    monkeypatch.delenv(ENV_HOST)
    assert example_parallel("h", 1).logger.name == f"node.{socket.gethostname()}.example_parallel"


@pytest.mark.parametrize(("returned", "code"), [(None, 0), (0, 0), (4, 4), ("bad", 1)])
def test_run_return_value_becomes_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, returned: object, code: int
) -> None:
    monkeypatch.delenv(ENV_TOKEN, raising=False)

    class Node(LOFARnode):
        def run(self, *args: str) -> int | None:
            return returned  # type: ignore[return-value]

    assert Node("h", 1).run_with_logging() == code


def test_send_failure_falls_back_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    class BrokenSocket:
        closed = False

        def sendall(self, data: bytes) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def close(self) -> None:
            self.closed = True

    broken = BrokenSocket()
    handler = _ChannelHandler(broken, "head:5000")  # type: ignore[arg-type]
    log = logging.getLogger("node.test.fallback")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("first")
        log.warning("second")
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("lost the log channel to head:5000") == 1
    assert "node.test.fallback: first" in err and "node.test.fallback: second" in err
    assert broken.closed


def test_bad_job_id_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_JOB_ID, "seven")
    monkeypatch.setenv(ENV_TOKEN, "t")
    assert node_module.read_credentials() is None


def test_import_needs_only_the_standard_library() -> None:
    code = (
        "import sys, lofarexec.node\n"
        "mods = {m.split('.')[0] for m in sys.modules} - {'__main__'}\n"
        "print(sorted(m for m in mods if m not in sys.stdlib_module_names))\n"
        "print('pluggy' in sys.modules, 'paramiko' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['lofarexec']", "False False"]


TRUNK_SHAPED = (
    "import sys\n"
    "from lofarpipe.support.lofarnode import LOFARnodeTCP\n"
    "class trunk(LOFARnodeTCP):\n"
    "    def run(self, *args):\n"
    "        print('RAN', args)\n"
    "jobid, jobhost, jobport = sys.argv[1:4]\n"
    "sys.exit(trunk(jobid, jobhost, jobport).run_with_stored_arguments())\n"
)


@pytest.mark.parametrize("mode, argv, expected", [
    ("command_line", ["127.0.0.1", "9", "x"],
     "trunk fetches its arguments (run_with_stored_arguments), but this run passed them on the "
     "command line; set '[remote] node_arguments = stored' in pipeline.cfg"),
    (None, ["127.0.0.1", "9", "x"],
     "trunk expects <job id> <log host> <log port> as its first arguments, not '127.0.0.1'; a "
     "run starts such nodes when pipeline.cfg has '[remote] node_arguments = stored' (or the "
     "job has store_arguments=True)"),
])
def test_a_trunk_node_given_command_line_arguments_stops_in_one_line(
        tmp_path: Path, mode: str | None, argv: list[str], expected: str) -> None:
    script = tmp_path / "trunk.py"
    script.write_text(TRUNK_SHAPED)
    env = node_env()
    if mode:
        env[node_module.ENV_NODE_ARGUMENTS] = mode
    result = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 1 and "RAN" not in result.stdout
    assert result.stderr.splitlines() == [f"lofarexec.node: {expected}"]


def test_a_seed_node_given_stored_arguments_stops_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(node_module.ENV_NODE_ARGUMENTS, "stored")
    with pytest.raises(SystemExit, match=r"^lofarexec.node: LOFARnode takes its arguments from "
                       r"the command line \(run_with_logging\), but this run stored them; remove "
                       r"'\[remote\] node_arguments = stored' from pipeline.cfg"):
        node_module.LOFARnode("7", "127.0.0.1")
    assert node_module.ENV_NODE_ARGUMENTS not in os.environ  # never inherited by its programs

"""The mpirun backend: its command line and settings, then Open MPI for real (marked slow).

The contract suite runs twice: on host names Open MPI treats as this machine (it starts those
jobs itself) and on the ssh test bed, where mpirun starts ``orted`` on each host through the
``rsh_agent`` setting. The tests after it cover what the contract does not: an exit status of
128+N that is not a signal, a mpirun killed outright, the token's route, launch failures.
"""

from __future__ import annotations

import base64
import logging
import os
import select
import shutil
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import lofarexec_mpirun
import pytest
from lofarexec_mpirun import MpirunBackend, MpirunSettings

from lofarexec.backend import LaunchRequest, Outcome
from lofarexec.config import load_config
from lofarexec.errors import ConfigError
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from lofarexec.testing.contract import BackendContract, ContractSetup
from lofarexec.testing.sshbed import UNREACHABLE_HOST
from tests.helpers import wait_gone, write_config

#: Open MPI's launcher by its own name: ``mpirun`` may point to MPICH through alternatives.
OPEN_MPI = shutil.which("mpirun.openmpi") or shutil.which("mpirun") or "mpirun"
TOKEN = "tok-" + "5ecret" * 6


def require_open_mpi() -> None:
    """Skip (or, under CI, fail) when Open MPI is not installed."""
    if shutil.which(OPEN_MPI) is None:
        problem = "Open MPI is missing: apt-get install -y openmpi-bin"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


def local_host_names() -> list[str]:
    """Four names Open MPI runs here itself: it knows its host name, its addresses and
    ``localhost`` (case-insensitively); the scheduler counts each name as a host."""
    names: list[str] = []
    for name in ("localhost", "127.0.0.1", socket.gethostname(), "LOCALHOST", "Localhost"):
        if name not in names:
            names.append(name)
    return names[:4]


def backend(**settings: object) -> MpirunBackend:
    return MpirunBackend(MpirunSettings(**{"mpirun": OPEN_MPI, **settings}))  # type: ignore[arg-type]


def launch_request(argv: list[str], host: str = "localhost", **environment: str) -> LaunchRequest:
    env = {"PATH": os.environ["PATH"], **environment}
    return LaunchRequest(job_id=7, host=host, argv=tuple(argv), environment=env, token=TOKEN)


class Outcomes:
    """Collects reports; ``wait()`` returns the one outcome once it is there."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.done = threading.Event()

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.done.set()

    def wait(self, timeout: float = 30.0) -> Outcome:
        assert self.done.wait(timeout), "no report"
        assert len(self.outcomes) == 1
        return self.outcomes[0]


# ---------------------------------------------------------------------------------- settings


def test_the_options_come_from_the_settings():
    options = backend(allow_run_as_root=True, rsh_agent="ssh -F /x/cfg",
                      arguments="-q --tag-output", kill_grace=1.5).mpirun_options()
    assert options == [OPEN_MPI, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                       "--mca", "odls_base_sigkill_timeout", "2",
                       "--mca", "plm_rsh_agent", "ssh -F /x/cfg", "-q", "--tag-output"]


def test_one_job_is_one_mpirun_with_the_wrapper_as_a_list_after_the_separator(monkeypatch):
    seen: dict[str, object] = {}

    class CapturingLauncher:
        def __init__(self, **options: object) -> None:
            seen["grace"] = options["kill_grace"]

        def start(self) -> None:
            pass

        def launch(self, argv: list[str], report: object, **options: object) -> None:
            seen.update(argv=argv, **options)

        def close(self) -> None:
            pass

    monkeypatch.setattr(lofarexec_mpirun, "ProcessLauncher", CapturingLauncher)
    mpirun = backend()
    mpirun.open()
    mpirun.start(launch_request(["/my node/x.py", "a  b", ""]), Outcomes())
    mpirun.close()
    assert seen["grace"] == MpirunSettings().launcher_grace
    argv = seen["argv"]
    assert isinstance(argv, list)
    separator = argv.index("--")
    assert argv[separator - 7:separator] == ["--mca", "orte_local_tmpdir_base",
                                             f"{mpirun._session_root}/0",
                                             "-np", "1", "--host", "localhost"]
    assert argv[separator + 1:separator + 4] == ["python3", "-I", "-S"]
    assert argv[-3:] == ["/my node/x.py", "a  b", ""]
    assert seen["keep_stdin_open"] is True
    assert base64.b64encode(TOKEN.encode()) in seen["stdin_data"]
    assert not any(TOKEN in word for word in argv)


def test_allow_run_as_root_defaults_to_whether_we_are_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "--allow-run-as-root" not in backend().mpirun_options()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "--allow-run-as-root" in backend().mpirun_options()
    assert "--allow-run-as-root" not in backend(allow_run_as_root=False).mpirun_options()
    assert "--oversubscribe" not in backend(oversubscribe=False).mpirun_options()


@pytest.mark.parametrize("grace, timeout", [(0.0, 1), (0.5, 1), (1.0, 2), (2.9, 3)])
def test_open_mpi_waits_longer_than_the_wrapper_before_its_sigkill(grace, timeout):
    settings = MpirunSettings(kill_grace=grace)
    assert settings.sigkill_timeout == timeout > grace
    assert settings.launcher_grace > settings.sigkill_timeout


@pytest.mark.parametrize("section, complaint", [
    ("rsh_agent = ssh -F '/a b/cfg'", "does not understand quotes"),
    ("arguments = --mca 'x", "closing quotation"),
    ("kill_grace = -1", "between 0 and 3600"),
    ("bind_to = ", "bind_to"),
    ("agent = ssh", "unknown key"),
])
def test_bad_settings_are_config_errors_naming_the_section(tmp_path, section, complaint):
    path = write_config(tmp_path, f"[mpirun]\n{section}\n", method="mpirun")
    config = load_config(path, job_name="t", start_time="now")
    with pytest.raises(ConfigError, match=complaint) as caught:
        config.section_settings("mpirun", MpirunSettings)
    assert "[mpirun]" in str(caught.value) and "pipeline.cfg" in str(caught.value)


@pytest.mark.parametrize("host", ["", " ", "-np", "a,b", "node1:4", "two words"])
def test_a_host_mpirun_would_misread_is_a_transport_error(host):
    outcomes = Outcomes()
    handle = backend().start(launch_request(["true"], host=host), outcomes)
    handle.kill()
    assert "not a host name" in (outcomes.wait(1).transport_error or "")


# ---------------------------------------------------------------------------------- for real


@pytest.mark.slow
class TestMpirunLocalContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path):
        require_open_mpi()
        return ContractSetup(method="mpirun", hosts=local_host_names(), directory=tmp_path,
                             python=sys.executable,
                             config=f"[mpirun]\nmpirun = {OPEN_MPI}\n"
                                    "[logging]\nbind_address = 127.0.0.1\n")


@pytest.mark.slow
class TestMpirunTestBedContract(BackendContract):
    @pytest.fixture
    def contract_setup(self, tmp_path, ssh_testbed):
        require_open_mpi()
        return ContractSetup(
            method="mpirun", hosts=ssh_testbed.host_names, directory=tmp_path,
            python=ssh_testbed.python,
            config=f"""
                [mpirun]
                mpirun = {OPEN_MPI}
                rsh_agent = ssh -F {ssh_testbed.ssh_config}
                [logging]
                bind_address = 127.0.0.1
                """,
        )

    def unreachable_host(self, setup: ContractSetup) -> str | None:
        return UNREACHABLE_HOST


@pytest.fixture
def opened():
    """A started backend factory; every backend it made is closed afterwards."""
    require_open_mpi()
    made: list[MpirunBackend] = []

    def make(**settings: object) -> MpirunBackend:
        made.append(backend(**settings))
        made[-1].open()
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.mark.slow
def test_a_node_exiting_137_is_not_mistaken_for_a_signal(opened):
    """mpirun alone reports 137 for both; the wrapper tells them apart."""
    mpirun = opened()
    exits, killed = Outcomes(), Outcomes()
    mpirun.start(launch_request([sys.executable, "-c", "raise SystemExit(137)"]), exits)
    suicide = "import os; os.kill(os.getpid(), 9)"
    mpirun.start(launch_request([sys.executable, "-c", suicide]), killed)
    assert exits.wait().returncode == 137
    assert killed.wait().returncode == -signal.SIGKILL


STUBBORN = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    with open(sys.argv[1], "w") as fifo:
        fifo.write("%d %d" % (os.getpid(), child.pid))
    time.sleep(300)
    """)


class PidPipe:
    """A FIFO the stubborn node writes its pids to: the test waits on it, not on a clock."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "pids.fifo"
        os.mkfifo(self.path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def pids(self, timeout: float = 30.0) -> list[int]:
        text = b""
        deadline = time.monotonic() + timeout
        while not text.endswith(b"\n") and (left := deadline - time.monotonic()) > 0:
            if select.select([self._fd], [], [], left)[0]:
                chunk = os.read(self._fd, 100)
                if not chunk:  # the writer closed: all there is
                    break
                text += chunk
        os.close(self._fd)
        assert text, "the node never wrote its pids"
        return [int(word) for word in text.split()]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "test bed"])
def test_the_node_dies_when_mpirun_is_killed_outright(opened, tmp_path, request, where):
    """SIGKILL gives Open MPI no chance to clean up; the wrapper sees its stdin end instead."""
    if where == "local":
        mpirun, host = opened(), "localhost"
    else:  # the host's orted leaves its session folder: keep it in tmp_path
        bed = request.getfixturevalue("ssh_testbed")
        mpirun, host = opened(rsh_agent=f"ssh -F {bed.ssh_config}",
                              arguments=f"--mca orte_remote_tmpdir_base {tmp_path}"), "node3"
    pipe = PidPipe(tmp_path)
    outcomes = Outcomes()
    handle = mpirun.start(launch_request([sys.executable, "-c", STUBBORN, str(pipe.path)], host),
                          outcomes)
    pids = pipe.pids()
    os.killpg(handle.pid, signal.SIGKILL)
    assert wait_gone(pids, 2.0), f"{pids} outlived a SIGKILLed mpirun"
    assert outcomes.wait().transport_error
    assert os.listdir(mpirun._session_root) == [], "mpirun's session folder was left behind"


@pytest.mark.slow
def test_the_token_is_on_no_command_line_and_in_no_environment_but_the_nodes(opened, tmp_path):
    mpirun = opened()
    pipe = PidPipe(tmp_path)
    outcomes = Outcomes()
    handle = mpirun.start(launch_request([sys.executable, "-c", STUBBORN, str(pipe.path)]),
                          outcomes)
    node_and_child = pipe.pids()  # a real node drops the token from its environment at once
    try:
        seen = [pid for pid in _descendants(handle.pid)
                if pid not in node_and_child]
        assert len(seen) >= 2  # mpirun and the wrapper at least
        for pid in seen:
            for what in ("cmdline", "environ"):
                assert TOKEN.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), (pid, what)
    finally:
        handle.kill()
    assert outcomes.wait().returncode == -signal.SIGKILL


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_an_unknown_host_is_a_transport_error_in_ssh_s_words(opened, ssh_testbed):
    mpirun = opened(rsh_agent=f"ssh -F {ssh_testbed.ssh_config}")
    outcomes = Outcomes()
    mpirun.start(launch_request(["true"], host="nosuchhost.invalid"), outcomes)
    outcome = outcomes.wait()
    assert outcome.returncode is None
    assert outcome.transport_error.startswith("mpirun failed")
    assert "Could not resolve hostname" in outcome.transport_error


@pytest.mark.slow
def test_a_missing_launcher_is_a_transport_error(opened):
    mpirun = opened(mpirun="/nonexistent/mpirun")
    outcomes = Outcomes()
    mpirun.start(launch_request(["true"]), outcomes)
    assert "cannot start '/nonexistent/mpirun'" in (outcomes.wait().transport_error or "")


@pytest.mark.slow
def test_a_node_script_in_a_folder_with_spaces(tmp_path):
    require_open_mpi()
    folder = tmp_path / "with  two spaces"
    folder.mkdir()
    script = folder / "spaced node.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from lofarexec.node import LOFARnode
        class spaced(LOFARnode):
            def run(self, *args):
                open(args[0], "w").write(args[1])
                return 0
        sys.exit(spaced(sys.argv[1], sys.argv[2]).run_with_logging(*sys.argv[3:]))
        """))
    out = folder / "out put"
    job = ComputeJob("localhost", f"{sys.executable} '{script}'", [str(out), "a  b"])
    path = write_config(tmp_path, f"[mpirun]\nmpirun = {OPEN_MPI}\n"
                                  "[logging]\nbind_address = 127.0.0.1\n", method="mpirun")
    config = load_config(path, job_name="spaces", start_time="now")
    JobRunner(config, recipe_name="spaces", error=threading.Event()).schedule([job])
    assert job.results["state"] == "succeeded", job.results
    assert out.read_text() == "a  b"


@pytest.mark.slow
def test_the_end_of_run_audit_kills_what_a_node_left_through_mpirun(tmp_path, caplog):
    """A sleeper double-forked out of its job's process group (and so out of Open MPI's
    kill) is named by host and pid after the run and killed by one more mpirun per host."""
    from tests.run.test_audit import assert_named_by_host_and_killed, escaping_jobs

    require_open_mpi()
    hosts = local_host_names()[:2]
    jobs, pid_files = escaping_jobs(tmp_path, hosts)
    text = (f"[remote]\nmethod = mpirun\n[mpirun]\nmpirun = {OPEN_MPI}\n"
            "[logging]\nbind_address = 127.0.0.1\n")
    config = load_config(write_config(tmp_path, text), job_name="audit", start_time="now")
    with caplog.at_level(logging.WARNING):
        JobRunner(config, recipe_name="audit", error=threading.Event(),
                  progress=False).schedule(jobs)
    assert all(job.results["state"] == "succeeded" for job in jobs), jobs[0].results
    assert_named_by_host_and_killed(caplog, hosts, pid_files)

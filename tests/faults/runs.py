"""A recipe run in the controller namespace of a :class:`NetnsBed`, and what the fault tests
check after it: one final state per job in the journal, no process left on any host."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from lofarexec.channel.protocol import ENV_RUN
from lofarexec.run.journal import ENDED, read_journal
from lofarexec.testing.netnsbed import CONTROLLER_ADDRESS, NetnsBed
from lofarexec.testing.procs import cmdline, descendants, running, wait_gone
from tests.helpers import write_config

MASTER = """\
import json, sys
from lofarexec import BaseRecipe, ComputeJob, RemoteCommandRecipeMixIn

class faulty(BaseRecipe, RemoteCommandRecipeMixIn):
    def go(self):
        super().go()
        with open({spec!r}) as spec_file:
            spec = json.load(spec_file)
        jobs = [ComputeJob(host, command) for host, command in spec["jobs"]]
        self._schedule_jobs(jobs, max_per_node=spec["max_per_node"])
        return 1 if self.error.is_set() else 0

if __name__ == "__main__":
    sys.exit(faulty().main())
"""


class FaultRun:
    """Jobs ``(host, command)`` run by a recipe in ``bed``'s controller namespace; the
    pipeline.cfg has ``remote`` and ``ssh`` lines added to its sections."""

    def __init__(self, bed: NetnsBed, folder: Path, jobs: list[tuple[str, str]], *,
                 remote: str = "", ssh: str = "", max_per_node: int = 2) -> None:
        self.bed, self.folder, self.jobs = bed, folder, jobs
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"jobs": jobs, "max_per_node": max_per_node}))
        self.master = folder / "faulty.py"
        self.master.write_text(MASTER.format(spec=str(spec)))
        write_config(folder, f"[remote]\nmethod = ssh\n{remote}"
                             f"[ssh]\nconfig_file = {bed.ssh_config}\nconnect_timeout = 1\n"
                             f"alive_interval = 1\n{ssh}"
                             f"[logging]\nbind_address = {CONTROLLER_ADDRESS}\n"
                             f"advertise_address = {CONTROLLER_ADDRESS}\n")
        self.log = folder / "recipe.err"
        self.job_directory = folder / "runtime" / "jobs" / "fault"

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                self.bed.controller_command([sys.executable, str(self.master), "-j", "fault",
                                             "-v", *options]),
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def run(self, *options: str) -> int:
        """Run the recipe to its end; its exit status."""
        process = self.start(*options)
        try:
            return process.wait(120)
        finally:
            stop(process)

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def ended_lines(self) -> list[dict]:
        if not (self.job_directory / "journal.jsonl").exists():
            return []
        return [line for line in read_journal(self.job_directory, every_line=True)
                if line.get("event") == ENDED]

    def states(self) -> Counter[str]:
        """The final states, once it is sure that every job has exactly one ``ended`` line
        over the runs of the job name (``--resume`` runs only what did not succeed)."""
        by_run: dict[str, list[int]] = {}
        for line in self.ended_lines():
            by_run.setdefault(line["run"], []).append(line["id"])
        for ids in by_run.values():
            assert len(ids) == len(set(ids)), by_run
        assert set().union(*by_run.values()) == set(range(len(self.jobs))), by_run
        return Counter(entry["state"] for entry in self.results().values())

    def results(self) -> dict[int, dict]:
        """The journal's last entry of each job, by id (every job has one)."""
        last = {entry["id"]: entry for entry in read_journal(self.job_directory)}
        assert sorted(last) == list(range(len(self.jobs)))
        return last

    def assert_nothing_left(self, idle_sessions: bool = False) -> None:
        """No process of the run on any host; with ``idle_sessions``, an sshd session with no
        process under it is allowed (an OpenSSH ControlMaster outliving a SIGKILLed control
        node keeps its connection up to ControlPersist, 60 s)."""
        for host in self.bed.host_names:
            listener = self.bed.listener_pid(host)
            left = [pid for pid in self.bed.host_pids(host) if pid != listener]
            if idle_sessions:
                left = [pid for pid in left
                        if not (cmdline(pid).startswith("sshd:") and not descendants(pid))]
            if left and not wait_gone(left, 20):  # a session ends a moment after its client
                left = [pid for pid in left if running(pid)]
                raise AssertionError(f"{host}: {[cmdline(pid) for pid in left]}")


def marked_processes(marker: str) -> list[int]:
    """Live (not zombie) processes on this machine whose environment holds the run marker
    ``LOFAREXEC_RUN=marker``: what a run of it left, read from ``/proc`` here, without the
    end-of-run audit's own command."""
    wanted = f"{ENV_RUN}={marker}".encode() + b"\0"
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            held = wanted in environ.read_bytes() + b"\0"
        except OSError:  # gone meanwhile
            continue
        pid = int(environ.parent.name)
        if held and running(pid):
            found.append(pid)
    return found


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def wait_for(predicate, what: str, process: subprocess.Popen[bytes] | None = None,
             timeout: float = 60.0) -> None:
    """Poll ``predicate`` (a file written on another host or by another process: no event to
    await); fail early when ``process`` ended first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process is None or process.poll() is None, f"the recipe ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.02)

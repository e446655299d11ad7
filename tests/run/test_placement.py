"""Jobs without a host: host lists from config, Slurm and PBS, and least-loaded placement."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from lofarexec.config.hostlist import allocation_hosts, expand_hostlist
from lofarexec.errors import ConfigError, JobListError
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner
from lofarexec.run.scheduler import Limits, Scheduler
from lofarexec.testing.mock import MockBackend
from tests.run.test_scheduler import Recorder, _finish_in_background, prepare


@pytest.mark.parametrize("text, hosts", [
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("n[8-10],gpu1", ["n8", "n9", "n10", "gpu1"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ("a, b ,a", ["a", "b"]),
    ("lce001", ["lce001"]),
])
def test_slurm_host_list_syntax(text, hosts):
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["n[1-3", "n1-3]", "n[a-b]", "n[5-2]"])
def test_bad_host_lists_are_refused(text):
    with pytest.raises(ValueError):
        expand_hostlist(text)


def test_allocation_sources_in_order(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("cn1\ncn1\ncn2\n")
    environ = {"SLURM_JOB_NODELIST": "s[1-2]", "PBS_NODEFILE": str(nodefile)}
    assert allocation_hosts("c1,c2", environ) == ["c1", "c2"]
    assert allocation_hosts(None, environ) == ["s1", "s2"]
    assert allocation_hosts(None, {"PBS_NODEFILE": str(nodefile)}) == ["cn1", "cn2"]
    assert allocation_hosts(None, {}) == []
    with pytest.raises(ConfigError, match="cluster.*hosts.*unclosed"):
        allocation_hosts("n[1", {}, source="pipeline.cfg")
    with pytest.raises(ConfigError, match="PBS_NODEFILE"):
        allocation_hosts(None, {"PBS_NODEFILE": str(tmp_path / "missing")})


def test_open_jobs_go_to_the_least_loaded_host_and_placed_jobs_keep_theirs():
    backend = MockBackend()
    backend.hold = True
    recorder = Recorder()
    placed = [ComputeJob("a", "node") for _ in range(6)]  # data on "a": stays there
    open_jobs = [ComputeJob(None, "node") for _ in range(12)]
    jobs = placed + open_jobs
    finisher = _finish_in_background(backend, len(jobs))
    Scheduler(backend, prepare, limits=Limits(per_host=2), observer=recorder,
              pool=["a", "b", "c"]).run(jobs)
    finisher.join()
    assert all(job.results["host"] == "a" for job in placed)
    assert all(job.host in ("a", "b", "c") and job.results["host"] == job.host for job in open_jobs)
    assert max(recorder.peak.values()) == 2
    # "a" takes jobs without a host only once its own queue is empty
    position = {job_id: place for place, job_id in enumerate(recorder.order)}
    last_own = max(position[job.id] for job in placed)
    assert all(position[job.id] > last_own for job in open_jobs if job.host == "a")
    assert {job.host for job in open_jobs} >= {"b", "c"}


def test_placement_spreads_evenly_without_limits():
    backend = MockBackend()
    backend.hold = True
    jobs = [ComputeJob(None, "node") for _ in range(30)]
    finisher = _finish_in_background(backend, len(jobs))
    Scheduler(backend, prepare, pool=["x", "y", "z"]).run(jobs)
    finisher.join()
    assert Counter(job.host for job in jobs) == {"x": 10, "y": 10, "z": 10}


def test_no_host_and_no_host_list_is_refused_before_anything_starts():
    backend = MockBackend()
    with pytest.raises(JobListError, match="job 1 has no host.*\\[cluster\\] hosts"):
        Scheduler(backend, prepare).run([ComputeJob("a", "node"), ComputeJob(None, "node")])


def test_runner_takes_the_host_list_from_config(make_config, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.delenv("PBS_NODEFILE", raising=False)
    config = make_config("[cluster]\nhosts = w[1-3]\n", method="mock")
    jobs = [ComputeJob(None, "node") for _ in range(9)]
    JobRunner(config, recipe_name="t", error=threading.Event()).schedule(jobs)
    assert {job.results["host"] for job in jobs} <= {"w1", "w2", "w3"}
    assert all(job.results["state"] == "succeeded" for job in jobs)


def test_runner_takes_the_host_list_from_slurm(make_config, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NODELIST", "sn[07-08]")
    config = make_config(method="mock")
    jobs = [ComputeJob(None, "node") for _ in range(4)]
    JobRunner(config, recipe_name="t", error=threading.Event()).schedule(jobs)
    assert {job.results["host"] for job in jobs} <= {"sn07", "sn08"}

"""ComputeJob: what a recipe may hand the scheduler, and what it refuses before any job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofarexec.errors import JobFailed, JobListError, JobTimeout, LofarexecError
from lofarexec.job import RESULT_KEYS, SUMMARY_KEYS, ComputeJob, JobResult, JobState


def test_arguments_become_argv_text() -> None:
    job = ComputeJob("node1", "python node.py", ["a b", 3, 2.5, Path("/data/x.MS")])
    assert job.arguments == ["a b", "3", "2.5", "/data/x.MS"]


@pytest.mark.parametrize("command, arguments", [("python node.py", ["a\0b"]),
                                                ("python node\0.py", [])])
def test_a_nul_byte_is_refused_in_one_line(command: str, arguments: list[str]) -> None:
    with pytest.raises(JobListError, match="holds a NUL byte") as caught:
        ComputeJob("node1", command, arguments)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # older `except ValueError` code still works


def test_stored_arguments_may_hold_anything_json_can() -> None:
    job = ComputeJob("node1", "python node.py", [{"a\0b": [None, True]}], store_arguments=True)
    assert job.arguments == [{"a\0b": [None, True]}]


@pytest.mark.parametrize("bad", [b"bytes", object(), True])
def test_arguments_that_are_not_text_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="arguments travel as command-line strings"):
        ComputeJob("node1", "python node.py", [bad])


@pytest.mark.parametrize("command", ["", "   ", "python node\0.py"])
def test_a_bad_command_is_a_job_list_error(command: str) -> None:
    with pytest.raises(JobListError):
        ComputeJob("node1", command)


def ended(state: JobState, reason: str | None = None, returncode: int | None = None) -> ComputeJob:
    job = ComputeJob("node1", "python node.py")
    job.id = 4
    job.results = JobResult.pending("node1", "mock")
    job.results.start("node1", 100.0)
    job.results.finish(state, reason, returncode=returncode, output="", errors="", now=102.5)
    return job


def test_raise_for_state_returns_a_succeeded_job() -> None:
    job = ended(JobState.SUCCEEDED, returncode=0)
    assert job.raise_for_state() is job


def test_raise_for_state_gives_job_failed_with_the_job_s_facts() -> None:
    job = ended(JobState.FAILED, "node script exited with status 3", returncode=3)
    with pytest.raises(JobFailed) as caught:
        job.raise_for_state()
    error = caught.value
    assert not isinstance(error, JobTimeout) and isinstance(error, LofarexecError)
    assert (error.job_id, error.host, error.state, error.returncode, error.reason) == (
        4, "node1", "failed", 3, "node script exited with status 3")
    assert str(error) == "job 4 on node1 failed: node script exited with status 3"


def test_raise_for_state_gives_job_timeout_for_a_timed_out_job() -> None:
    job = ended(JobState.TIMED_OUT, "killed after exceeding its time limit", returncode=-15)
    with pytest.raises(JobTimeout, match="job 4 on node1 timed_out: killed after") as caught:
        job.raise_for_state()
    assert caught.value.state == "timed_out" and caught.value.returncode == -15


@pytest.mark.parametrize("state", [JobState.TRANSPORT_ERROR, JobState.KILLED])
def test_raise_for_state_refuses_every_other_end(state: JobState) -> None:
    with pytest.raises(JobFailed, match=f"job 4 on node1 {state.value}"):
        ended(state, "why").raise_for_state()


def test_raise_for_state_refuses_a_job_that_has_not_ended() -> None:
    job = ComputeJob("node1", "python node.py")
    with pytest.raises(JobFailed, match="pending") as caught:
        job.raise_for_state()
    assert caught.value.reason is None


def test_results_are_a_dict_with_the_documented_keys() -> None:
    results = ended(JobState.FAILED, "why", returncode=1).results
    assert isinstance(results, dict)
    assert results["state"] == "failed" and results.get("job_duration") == 2.5
    assert set(results) == set(RESULT_KEYS)
    assert list(results.summary()) == list(SUMMARY_KEYS)
    assert "output" not in SUMMARY_KEYS and set(SUMMARY_KEYS) < set(RESULT_KEYS)


def test_a_node_s_outputs_never_replace_a_result_key() -> None:
    results = ended(JobState.SUCCEEDED, returncode=0).results
    refused = results.add_outputs({"state": "fine", "returncode": 7, "files": ["a.MS"]})
    assert refused == ["returncode", "state"]
    assert results["state"] == "succeeded" and results["returncode"] == 0
    assert results["files"] == ["a.MS"]

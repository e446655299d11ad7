"""ComputeJob: what a recipe may hand the scheduler, and what it refuses before any job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofarexec.errors import JobFailed, JobListError, JobTimeout, LofarexecError
from lofarexec.job import (
    RESULT_KEYS,
    SUMMARY_KEYS,
    ComputeJob,
    JobResult,
    JobState,
    launch_arguments,
)


def test_arguments_become_argv_text() -> None:
    job = ComputeJob("node1", "python node.py", ["a b", 3, 2.5, Path("/data/x.MS")],
                     store_arguments=False)
    assert job.arguments == ["a b", "3", "2.5", "/data/x.MS"]
    undecided = ComputeJob("node1", "python node.py", ["a b", 3, 2.5, Path("/data/x.MS")])
    assert launch_arguments([undecided], "command_line") == [["a b", "3", "2.5", "/data/x.MS"]]


@pytest.mark.parametrize("bad", [True, None, [1], {"PATH": "/bin"}, ("a", "b")])
def test_typed_arguments_go_stored_when_the_config_says_so(bad: object) -> None:
    job = ComputeJob("node1", "python node.py", ["x", bad])
    assert job.arguments == ["x", bad]  # kept as given until the configuration has chosen
    assert launch_arguments([job], "stored") == [None]
    with pytest.raises(JobListError) as caught:
        launch_arguments([ComputeJob("h", "c"), job], "command_line")
    message = str(caught.value)
    assert message.startswith("job 1: ComputeJob argument ") and "\n" not in message
    assert message.endswith("set '[remote] node_arguments = stored' in pipeline.cfg (nodes "
                            "that call run_with_stored_arguments), or pass text")


def test_the_job_s_own_choice_wins_over_the_configuration() -> None:
    stored = ComputeJob("node1", "python node.py", [None], store_arguments=True)
    text = ComputeJob("node1", "python node.py", ["a"], store_arguments=False)
    assert launch_arguments([stored, text], "command_line") == [None, ["a"]]
    assert launch_arguments([stored, text], "stored") == [None, ["a"]]
    with pytest.raises(JobListError, match="job 0: its stored arguments are not JSON"):
        launch_arguments([ComputeJob("h", "c", [{1, 2}])], "stored")


def test_resources_take_cores_only() -> None:
    assert ComputeJob("node1", "c", [], {"cores": 4}).cores == 4
    assert ComputeJob("node1", "c").cores is None and ComputeJob("node1", "c").resources == {}
    with pytest.raises(JobListError, match="resources: unknown key 'memory'; known: cores"):
        ComputeJob("node1", "c", resources={"cores": 2, "memory": 8})
    for bad in (0, True, "4", 2.5):
        with pytest.raises(JobListError, match="must be a whole number of at least 1"):
            ComputeJob("node1", "c", resources={"cores": bad})


@pytest.mark.parametrize("command, arguments", [("python node.py", ["a\0b"]),
                                                ("python node\0.py", [])])
def test_a_nul_byte_is_refused_in_one_line(command: str, arguments: list[str]) -> None:
    with pytest.raises(JobListError, match="holds a NUL byte") as caught:
        ComputeJob("node1", command, arguments, store_arguments=False)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # older `except ValueError` code still works
    if arguments:  # left to the configuration, the same refusal comes before any job starts
        with pytest.raises(JobListError, match="job 0: .*holds a NUL byte"):
            launch_arguments([ComputeJob("node1", command, arguments)], "command_line")


def test_stored_arguments_may_hold_anything_json_can() -> None:
    job = ComputeJob("node1", "python node.py", [{"a\0b": [None, True]}], store_arguments=True)
    assert job.arguments == [{"a\0b": [None, True]}]


@pytest.mark.parametrize("bad", [b"bytes", object(), True])
def test_arguments_that_are_not_text_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="arguments travel as command-line strings"):
        ComputeJob("node1", "python node.py", [bad], store_arguments=False)


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

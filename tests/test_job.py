"""ComputeJob: what a recipe may hand the scheduler, and what it refuses before any job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofarexec.job import ComputeJob


def test_arguments_become_argv_text() -> None:
    job = ComputeJob("node1", "python node.py", ["a b", 3, 2.5, Path("/data/x.MS")])
    assert job.arguments == ["a b", "3", "2.5", "/data/x.MS"]


@pytest.mark.parametrize("command, arguments", [("python node.py", ["a\0b"]),
                                                ("python node\0.py", [])])
def test_a_nul_byte_is_refused_in_one_line(command: str, arguments: list[str]) -> None:
    with pytest.raises(ValueError, match="holds a NUL byte") as caught:
        ComputeJob("node1", command, arguments)
    assert "\n" not in str(caught.value)


def test_stored_arguments_may_hold_anything_json_can() -> None:
    job = ComputeJob("node1", "python node.py", [{"a\0b": [None, True]}], store_arguments=True)
    assert job.arguments == [{"a\0b": [None, True]}]


@pytest.mark.parametrize("bad", [b"bytes", object(), True])
def test_arguments_that_are_not_text_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="arguments travel as command-line strings"):
        ComputeJob("node1", "python node.py", [bad])

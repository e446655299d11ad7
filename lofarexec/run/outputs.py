"""The run report a recipe gets after ``_schedule_jobs``: the original framework's XML, and JSON.

The XML is the LOFAR framework's ``return_xml`` shape, one element per job, every job included
(also those that never started, with an empty duration and returncode)::

    <nodes><job job_id="0" job_host="lce001" duration="12.5" returncode="0"/>...</nodes>

The JSON carries the same per job, plus the state and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from xml.etree import ElementTree

from lofarexec.job import ComputeJob


def return_xml(jobs: Iterable[ComputeJob]) -> str:
    """``<nodes>`` with a ``<job>`` per job: id, host, duration (s), return code."""
    nodes = ElementTree.Element("nodes")
    for job in jobs:
        results = job.results
        ElementTree.SubElement(nodes, "job", {
            "job_id": str(job.id),
            "job_host": str(results.get("host") or job.host or ""),
            "duration": _text(results.get("job_duration")),
            "returncode": _text(results.get("returncode")),
        })
    return ElementTree.tostring(nodes, encoding="unicode")


def return_json(jobs: Iterable[ComputeJob]) -> str:
    """The same report as JSON: a list of objects, one per job, in job order."""
    return json.dumps([
        {"job_id": job.id, "job_host": job.results.get("host") or job.host,
         "duration": job.results.get("job_duration"), "returncode": job.results.get("returncode"),
         "state": job.results.get("state"), "reason": job.results.get("reason")}
        for job in jobs
    ])


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)

"""Resume: which jobs of a batch already succeeded in an earlier run of the same job name.

A run that stopped (a failure, Ctrl-C, a control node killed outright) is run again with
``--resume``: each job whose identity - the host it asked for, its command and its arguments -
last ended ``succeeded`` in the job directory's journal is not run again; its results (and the
outputs its node sent) come back from the journal. Identities, not sequence numbers, decide, so a
job list built in another order, or with a job changed, still matches what it should: a changed
job is a new identity and runs. The backend plays no part, so a resume may switch backends.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lofarexec.job import RESULT_KEYS, SUCCEEDED, ComputeJob, JobResult
from lofarexec.run.journal import JOURNAL_NAME, read_journal

__all__ = ["earlier_successes", "job_identities", "restore_results", "resume_batch"]


def job_identities(jobs: Sequence[ComputeJob]) -> list[str]:
    """One identity per job, in order; call it before jobs without a host are placed. A digest
    of the host the job asked for (none, for one placed from the pool), its command and its
    arguments; the n-th repeat of the same job in a batch gets ``#n`` after it, so identical
    jobs are told apart by their order."""
    seen: dict[str, int] = {}
    identities = []
    for job in jobs:
        digest = _digest(job)
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        identities.append(f"{digest}#{count}" if count else digest)
    return identities


def _digest(job: ComputeJob) -> str:
    arguments = job.arguments
    if all(type(argument) is str for argument in arguments):  # the usual case, and quick
        text = "\0".join((job.host or "", job.command, *arguments))
    else:
        text = json.dumps([job.host, job.command, arguments], sort_keys=True,
                          ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def earlier_successes(job_directory: str | Path, identities: Sequence[str],
                      logger: logging.Logger) -> dict[int, dict[str, Any]]:
    """For each job (by index) whose identity last ended ``succeeded`` in the journal, that
    journal entry. No journal yet: nothing to skip."""
    if not (Path(job_directory) / JOURNAL_NAME).exists():
        logger.info("resume: no journal in %s yet, so every job runs", job_directory)
        return {}
    last: dict[str, dict[str, Any]] = {}
    for entry in read_journal(job_directory):
        identity = entry.get("identity")
        if identity is not None:
            last[identity] = entry
        # A started line without an end (the run died) names no identity: the job runs again.
    return {index: last[identity] for index, identity in enumerate(identities)
            if last.get(identity, {}).get("state") == SUCCEEDED}


def restore_results(entry: dict[str, Any]) -> JobResult:
    """A skipped job's results as its successful run left them, outputs included."""
    results = JobResult((key, entry.get(key)) for key in RESULT_KEYS if key in entry)
    results.add_outputs(entry.get("outputs") or {})
    return results


def resume_batch(jobs: Sequence[ComputeJob], job_directory: str | Path | None,
                 logger: logging.Logger) -> frozenset[int]:
    """Give each job its identity; with a ``job_directory`` (``--resume``), restore the results
    of the jobs that succeeded there before and return their indices, saying how many."""
    identities = job_identities(jobs)
    for job, identity in zip(jobs, identities):
        job.identity = identity
    if job_directory is None:
        return frozenset()
    earlier = earlier_successes(job_directory, identities, logger)
    for index, entry in earlier.items():
        jobs[index].results = restore_results(entry)
    if earlier:
        logger.info("resume: %d of %d jobs succeeded in an earlier run and are skipped; %d run",
                    len(earlier), len(jobs), len(jobs) - len(earlier))
    elif jobs:
        logger.info("resume: no job of this batch succeeded before; all %d run", len(jobs))
    return frozenset(earlier)

"""Real runs on the local backend whose journals the report tests read."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from lofarexec.config import PipelineConfig
from lofarexec.job import ComputeJob
from lofarexec.run.runner import JobRunner

#: What a failing job writes last: hostile markup, which every report must escape.
HOSTILE = "<script>alert('owned')</script> & <img src=x onerror=alert(1)>"
#: A plain program: sleeps argv[3] seconds, writes argv[5] to stderr, exits with argv[4].
JOB_PROGRAM = """\
import sys, time
time.sleep(float(sys.argv[3]))
print("working on", sys.argv[3])
if int(sys.argv[4]):
    print("first line of the failure", file=sys.stderr)
    print(sys.argv[5], file=sys.stderr)
sys.exit(int(sys.argv[4]))
"""


def job_command(directory: Path) -> str:
    program = directory / "job.py"
    program.write_text(JOB_PROGRAM)
    return f"{sys.executable} {program}"


#: ``(host, seconds, exit status)``, or with the last line it writes to stderr.
JobSpec = tuple[str, float, int] | tuple[str, float, int, str]


def run_jobs(config: PipelineConfig, specs: list[JobSpec],
             max_per_node: int | None = None, recipe: str = "reported",
             logger: logging.Logger | None = None) -> dict[int, ComputeJob]:
    """Run one job per ``(host, seconds, exit status[, last stderr line])`` (the line
    :data:`HOSTILE` when not given) with the runner's own plugins (journal, report, summary),
    as a recipe's ``_schedule_jobs`` does."""
    command = job_command(Path(config.path).parent)
    jobs = [ComputeJob(spec[0], command, [str(spec[1]), str(spec[2]), (*spec, HOSTILE)[3]])
            for spec in specs]
    runner = JobRunner(config, recipe_name=recipe, error=threading.Event(), logger=logger)
    return runner.schedule(jobs, max_per_node=max_per_node)

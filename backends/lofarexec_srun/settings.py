"""The ``[srun]`` section of ``pipeline.cfg``: every field is a key, its help text the manual."""

from __future__ import annotations

import dataclasses
import shlex

from lofarexec.transport import check_shared_settings, kill_grace_field, remote_python_field

MODES = ("auto", "steps", "jobs")


@dataclasses.dataclass(frozen=True)
class SrunSettings:
    """``[srun]`` section of ``pipeline.cfg``."""

    srun: str = dataclasses.field(default="srun", metadata={"help": "the srun program"})
    mode: str = dataclasses.field(
        default="auto",
        metadata={"help": "'steps': each job is a step of the allocation named by SLURM_JOB_ID "
                          "(the pipeline runs inside salloc/sbatch); 'jobs': each job is a job "
                          "of its own; 'auto': steps when SLURM_JOB_ID is set, else jobs"})
    partition: str | None = dataclasses.field(
        default=None, metadata={"help": "partition for new jobs (-p); not used for steps"})
    account: str | None = dataclasses.field(
        default=None, metadata={"help": "account charged for new jobs (-A); not used for steps"})
    cpus_per_task: int | None = dataclasses.field(
        default=None, metadata={"help": "CPUs given to each job (-c); Slurm's default if unset"})
    job_name: str | None = dataclasses.field(
        default=None, metadata={"help": "name of each job or step (-J); default: "
                                        "lofarexec-<recipe name>"})
    extra_arguments: str = dataclasses.field(
        default="", metadata={"help": "more srun options, split like a shell would, placed "
                                      "before the command (e.g. --mem=2G --time=60)"})
    max_concurrent_launches: int = dataclasses.field(
        default=32, metadata={"help": "srun launches in flight at once (allocation and step "
                                      "creation); later jobs wait their turn in order, since "
                                      "hundreds of simultaneous launches make srun fail"})
    launch_retries: int = dataclasses.field(
        default=3, metadata={"help": "retries of a launch that provably never started the node "
                                     "(srun failed before reading the job's input)"})
    retry_backoff: float = dataclasses.field(
        default=1.0, metadata={"help": "seconds before the first retry; doubled for each next"})
    remote_python: str = remote_python_field("the launch wrapper")
    kill_grace: float = kill_grace_field()

    def __post_init__(self) -> None:
        check_shared_settings(self)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.max_concurrent_launches < 1:
            raise ValueError("max_concurrent_launches must be 1 or more")
        if self.launch_retries < 0:
            raise ValueError("launch_retries must be 0 or more")
        if self.retry_backoff < 0:
            raise ValueError("retry_backoff must be 0 or more seconds")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ValueError("cpus_per_task must be 1 or more")
        shlex.split(self.extra_arguments)  # fails early on unbalanced quotes

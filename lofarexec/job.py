"""What a recipe asks for (:class:`ComputeJob`) and what it gets back (its :class:`JobResult`).

A ``ComputeJob`` is cheap: a queued job is this object and a slot in a per-host queue, nothing
else (no thread, no process), so a recipe can hand the scheduler 100,000 of them.
:data:`RESULT_KEYS` is the one list of the results keys lofarexec writes; the scheduler, the
runner, the journal and the reports all name them from here.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lofarexec.errors import JobFailed, JobListError, JobTimeout
from lofarexec.hostnames import host_name_problem, is_host_name


class JobState(str, enum.Enum):
    """Where a job is, and for finished jobs how it ended.

    ``str`` subclass so that the state stored in ``job.results['state']`` serialises as text.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRANSPORT_ERROR = "transport_error"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    NOT_STARTED = "not_started"

    @property
    def is_final(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)

    def __str__(self) -> str:
        return self.value


#: ``JobState.SUCCEEDED.value``, for the run layer's per-job checks of ``results['state']``
#: (a plain string compares faster than the enum member's attribute each time).
SUCCEEDED = JobState.SUCCEEDED.value


#: The ``job.results`` keys lofarexec writes, in the order a journal line or report shows them;
#: a node's ``outputs`` never replace them.
RESULT_KEYS: tuple[str, ...] = (
    "host", "backend", "attempts", "start_time", "end_time", "job_duration", "returncode",
    "state", "reason", "output", "errors",
)
#: The keys a journal line or a report carries: all but the node's output and error text.
SUMMARY_KEYS: tuple[str, ...] = RESULT_KEYS[:-2]
#: Each state's text, read once: an enum's ``.value`` is a property call, made per job.
_STATE_TEXT = {state: state.value for state in JobState}
_PENDING, _RUNNING = JobState.PENDING.value, JobState.RUNNING.value
_RESERVED = frozenset(RESULT_KEYS)
#: Host names found good: a batch names its few hosts over and over (checked once each).
_CHECKED_HOSTS: set[str] = set()
_MAX_CHECKED_HOSTS = 100_000


class JobResult(dict[str, Any]):
    """``job.results``: a dict (``results["state"]``, ``results.get("reason")``) whose own keys
    are :data:`RESULT_KEYS`, plus whatever the node put in its ``self.outputs``.

    The methods are the only places that write lofarexec's keys: :meth:`pending` when a batch
    takes the job, :meth:`start` per attempt, :meth:`finish` with the verdict, and
    :meth:`not_run` for a job that never starts.
    """

    __slots__ = ()

    @classmethod
    def pending(cls, host: str | None, backend: str) -> JobResult:
        """A queued job's results: ``pending``, no attempt yet."""
        return cls(state=_PENDING, host=host, backend=backend, attempts=0,
                   returncode=None)

    @classmethod
    def not_run(cls, host: str | None, reason: str) -> JobResult:
        """The results of a job that will never start (a dry run)."""
        return cls(state=JobState.NOT_STARTED.value, host=host, reason=reason, returncode=None,
                   attempts=0)

    def start(self, host: str, now: float) -> None:
        """One more attempt begins on ``host`` at ``now`` (epoch seconds)."""
        self["host"] = host
        self["state"] = _RUNNING
        self["attempts"] += 1
        self["start_time"] = now

    def finish(self, state: JobState, reason: str | None, *, returncode: int | None,
               output: str, errors: str, now: float) -> None:
        """The attempt that began at ``start_time`` ended at ``now`` with this verdict."""
        self["end_time"] = now
        self["job_duration"] = now - self["start_time"]
        self["returncode"] = returncode
        self["output"] = output
        self["errors"] = errors
        self["state"] = _STATE_TEXT[state]
        if reason:
            self["reason"] = reason

    def stopped(self, reason: str) -> None:
        """The run stopped before this queued job could start."""
        self["state"] = JobState.NOT_STARTED.value
        self["reason"] = reason

    def add_reason(self, text: str) -> None:
        """Add ``text`` to the reason: what the run learnt about the job beyond its verdict."""
        reason = self.get("reason")
        self["reason"] = f"{reason}; {text}" if reason else text

    def add_outputs(self, outputs: dict[str, Any]) -> list[str]:
        """Take a node's outputs; return (sorted) the ones refused for naming a result key."""
        self.update((key, value) for key, value in outputs.items() if key not in _RESERVED)
        return sorted(_RESERVED.intersection(outputs))

    def summary(self) -> dict[str, Any]:
        """The :data:`SUMMARY_KEYS` (``None`` when absent), for a journal line or a report."""
        return {key: self.get(key) for key in SUMMARY_KEYS}


class ComputeJob:
    """One invocation of a node script on one host.

    ``command`` is the node command as the seed writes it (``"python /path/nodes/x.py"``); it is
    split with :func:`shlex.split`, never given to a shell. ``arguments`` are passed to the node
    after the log host and port, each as one argv element, byte for byte.

    After the run ``results`` (a :class:`JobResult`) holds: ``returncode`` (the real exit
    status, minus the signal number when killed by a signal, ``None`` when it never ran),
    ``state`` (a :class:`JobState` value), ``host``, ``start_time`` and ``end_time`` (epoch
    seconds), ``job_duration`` (seconds), ``attempts``, ``reason`` (why it did not succeed; for a
    succeeded job, a caveat), ``output`` and ``errors`` (the ends of its stdout and stderr) and
    ``backend``, plus whatever the node put in its ``self.outputs`` (never replacing those keys).
    :meth:`raise_for_state` turns an unsuccessful end into an exception.

    How the arguments reach the node is ``store_arguments``: ``True``, the node (a
    ``LOFARnodeTCP``, the later framework's nodes) is started as ``<command> <job id> <log host>
    <log port>`` and fetches them over the authenticated job channel, so they may be any JSON
    values (None, bool, numbers, strings, lists, dicts; tuples arrive as lists) of any size;
    ``False``, they follow the log host and port on the node's command line, as text (the
    seed's nodes); ``None`` (the default), ``[remote] node_arguments`` chooses, ``command_line``
    when absent. Either way the value types are checked before any job starts.

    ``resources`` is the original's ``{"cores": N}``: the node gets ``OMP_NUM_THREADS=N`` and
    the cmdline backend's template ``{nr_cores}`` is ``N``. Other keys are refused.

    ``retries`` overrides ``[remote] retries`` for this job: how many more attempts a transport
    error (or an exit status in ``[remote] retry_exit_codes``) may have.
    """

    def __init__(
        self,
        host: str | None,
        command: str,
        arguments: Iterable[Any] = (),
        resources: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        store_arguments: bool | None = None,
        retries: int | None = None,
    ) -> None:
        if host is not None and not isinstance(host, str):
            raise TypeError(f"ComputeJob host must be a string, not {type(host).__name__}")
        if host is not None and host not in _CHECKED_HOSTS:
            if not is_host_name(host):
                raise JobListError(f"ComputeJob {host_name_problem(host)}")
            if type(host) is str and len(_CHECKED_HOSTS) < _MAX_CHECKED_HOSTS:
                _CHECKED_HOSTS.add(host)
        if not isinstance(command, str) or not command.strip():
            raise JobListError("ComputeJob command must be a non-empty string")
        if "\0" in command:
            raise JobListError(f"ComputeJob command {command!r} holds a NUL byte, which no "
                             "program's argv can carry")
        self.host = host
        self.command = command
        self.store_arguments = store_arguments
        # Stored arguments travel as JSON over the job channel, so any JSON value will do;
        # argv arguments are text, as the seed has them. Undecided ones are kept as given and
        # checked by launch_arguments() once the configuration has chosen.
        self.arguments: list[Any] = (
            [_argument_text(a) for a in arguments] if store_arguments is False
            else list(arguments)
        )
        self.resources: dict[str, Any] = _checked_resources(resources)
        self.timeout = timeout
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                    or retries < 0):
            raise JobListError(f"ComputeJob retries={retries!r} must be a whole number, 0 or more")
        #: Retries after the first attempt; None: ``[remote] retries`` (see lofarexec.run.retry).
        self.retries = retries
        self.results: JobResult = JobResult()
        #: What ``--resume`` matches on (host asked for, command, arguments), set per batch.
        self.identity: str | None = None
        self.id: int | None = None

    @property
    def cores(self) -> int | None:
        """``resources["cores"]``, or None when the recipe did not ask for a number of cores."""
        return self.resources.get("cores")

    @property
    def state(self) -> JobState:
        """The job's state; ``pending`` until the scheduler has seen it."""
        return JobState(self.results.get("state", JobState.PENDING))

    def raise_for_state(self) -> ComputeJob:
        """Return the job if it succeeded; else raise :class:`~lofarexec.errors.JobTimeout`
        (it ran past its time limit) or :class:`~lofarexec.errors.JobFailed` (any other state,
        a job that has not ended included), carrying its id, host, state, return code and
        reason. Like httpx's ``raise_for_status``: for recipes that want an exception::

            for job in self._schedule_jobs(jobs).values():
                job.raise_for_state()
        """
        state = self.state
        if state is JobState.SUCCEEDED:
            return self
        results = self.results
        host = results.get("host") or self.host
        reason = results.get("reason")
        error = JobTimeout if state is JobState.TIMED_OUT else JobFailed
        raise error(
            f"job {self.id} on {host} {state.value}" + (f": {reason}" if reason else ""),
            job_id=self.id, host=host, state=state.value,
            returncode=results.get("returncode"), reason=reason,
        )

    def __repr__(self) -> str:
        return (
            f"ComputeJob(host={self.host!r}, command={self.command!r}, "
            f"arguments={self.arguments!r})"
        )


#: ``[remote] node_arguments`` values: how a job whose ``store_arguments`` is None passes them.
NODE_ARGUMENTS_STORED = "stored"
NODE_ARGUMENTS_COMMAND_LINE = "command_line"
NODE_ARGUMENT_MODES = (NODE_ARGUMENTS_COMMAND_LINE, NODE_ARGUMENTS_STORED)
#: The keys ``ComputeJob(..., resources=...)`` knows.
RESOURCE_KEYS = ("cores",)
_STORED_HINT = ("set '[remote] node_arguments = stored' in pipeline.cfg (nodes that call "
                "run_with_stored_arguments), or pass text")


def launch_arguments(jobs: Sequence[ComputeJob], node_arguments: str) -> list[list[str] | None]:
    """Per job: its command-line arguments as text, or None when the node fetches them (stored).

    Called before any job starts, with ``[remote] node_arguments``, so that a value that
    cannot travel the chosen way is one :class:`~lofarexec.errors.JobListError` naming the job
    and what to do, not a failure on a host.
    """
    default_stored = node_arguments == NODE_ARGUMENTS_STORED
    plans: list[list[str] | None] = []
    none: list[str] = []  # one for every job without arguments (nothing changes a plan)
    for index, job in enumerate(jobs):
        stored = default_stored if job.store_arguments is None else job.store_arguments
        if stored:
            try:
                json.dumps(job.arguments, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise JobListError(f"job {index}: its stored arguments are not JSON ({exc}); "
                                   "use None, bool, numbers, strings, lists and dicts") from None
            plans.append(None)
            continue
        try:
            plans.append([_argument_text(argument) for argument in job.arguments]
                         if job.arguments else none)
        except (TypeError, JobListError) as exc:
            if job.store_arguments is False:
                raise JobListError(f"job {index}: {exc}") from None
            raise JobListError(f"job {index}: {exc}; for typed arguments "
                               f"{_STORED_HINT}") from None
    return plans


def _checked_resources(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """``resources`` as a dict, its keys known and ``cores`` a whole number of at least 1."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise JobListError(f"ComputeJob resources must be a dict such as {{'cores': 4}}, not "
                           f"{type(resources).__name__}")
    unknown = sorted(str(key) for key in resources if key not in RESOURCE_KEYS)
    if unknown:
        raise JobListError(f"ComputeJob resources: unknown key {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(RESOURCE_KEYS)}")
    cores = resources.get("cores")
    if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int)
                              or cores < 1):
        raise JobListError(f"ComputeJob resources: cores={cores!r} must be a whole number of "
                           "at least 1")
    return dict(resources)


def _argument_text(argument: Any) -> str:
    """Arguments travel as argv strings (the seed's contract); numbers and paths are spelt out.

    Anything else (bytes, objects) is refused here rather than sent as its ``repr``.
    """
    if isinstance(argument, str):
        if "\0" in argument:
            raise JobListError(f"ComputeJob argument {argument!r} holds a NUL byte, which no "
                             "program's argv can carry; pass it with store_arguments=True")
        return argument
    if isinstance(argument, (int, float)) and not isinstance(argument, bool):
        return str(argument)
    if isinstance(argument, os.PathLike):
        return os.fspath(argument)
    raise TypeError(
        f"ComputeJob argument {argument!r} is a {type(argument).__name__}: arguments travel as "
        "command-line strings; pass str, int, float or a path"
    )

"""The ``cmdline`` backend: any launcher, given as a command-line template (containers, ...).

The seed's ``custom_cmdline``. ``[cmdline] template`` is a command line with placeholders::

    [cmdline]
    template = ssh -F /etc/cluster/ssh_config {host} {command}
    # or: docker exec -i worker-{host} sh -c {command}
    # or: srun --jobid={slurm_job_id} -w {host} -N1 -n1 -c {nr_cores} sh -c {command}

How a template becomes a job's argv: it is split into words with :func:`shlex.split` *once*,
when the settings are read, and each word is then filled in on its own, so a value with spaces
stays one argument and is never re-split (the seed split after substituting). Placeholders:

==================  ===========================================================================
``{command}``       the node's command as one shell command line: ``exec``, the launch
                    wrapper, then the node's argv, each quoted once (:func:`shlex.join`). Hand
                    it to a shell: ``sh -c {command}``, ``ssh HOST {command}``,
                    ``docker exec -i C sh -c {command}``, ``sh -c 'cd /data && {command}'``
``{host}``          the job's host
``{uid}``           the effective uid of the control-node process
``{slurm_job_id}``  ``SLURM_JOB_ID`` of the control node (the run fails at start if unset)
``{docker_image}``  ``[cmdline] docker_image`` (a config error if used but unset)
``{job_name}``      the node script's name: the command's first word, or for a Python
                    interpreter the first word after it that is not an option
``{nr_cores}``      the job's ``resources={"cores": N}``, else ``[cmdline] nr_cores``
``{env}``           one ``NAME=value`` word per node variable (for ``env {env} ...``)
``{docker_env}``    ``-e`` and ``NAME=value`` words per node variable (for ``docker run``)
==================  ===========================================================================

``{env}`` and ``{docker_env}`` must be words of their own. They carry the node's variables
(PATH, PYTHONPATH, ... never the job's token), which the wrapper sets for the node anyway: use
them only when the launcher itself needs them, and mind that they show in ``ps``. ``{{`` and
``}}`` are literal braces; an unknown placeholder is a config error naming it, and ``%`` must
be written ``%%`` (pipeline.cfg interpolation).

The node always runs under :mod:`lofarexec.hostprograms.launch_wrapper`, as over ssh: the exit
status is the node's own, the environment and token travel on stdin, and the job is killed when that
stdin ends. So the launcher must pass its stdin through to ``{command}`` (``docker run -i``,
``kubectl exec -i``) and must not return before the command ends (``setsid -w``, not plain
``setsid``, which forks and returns at once here: the job would be killed on the spot).

With ``launch = agent`` the template is run once per host and run, with ``{command}`` starting
the host agent (:mod:`lofarexec.hostprograms.host_agent`) instead of a job, and every job of that
host is a request to that agent (:class:`lofarexec.transport.agent.AgentPool`): for launchers that
cost much per call (``docker exec``, ``kubectl exec``: tens to hundreds of milliseconds) and hosts
that run many jobs. The template may then use only what is the same for all of a host's jobs
(``{host}``, ``{uid}``, ``{slurm_job_id}``, ``{docker_image}``, ``{command}``).

Kill (``launch = process``): the launcher's process group gets SIGTERM, and SIGKILL ``kill_grace`` +
``KILL_MARGIN`` seconds later; a wrapper in that group (``sh -c {command}``) kills the node
``kill_grace`` seconds after the SIGTERM, one outside it (``ssh``) when its stdin ends. The
``exec`` in ``{command}`` is what makes the first case work: Debian's ``dash`` does not replace
itself with the last command of ``sh -c``, so without it the shell would die of the SIGTERM at
once, and the process launcher, which SIGKILLs whatever a finished job leaves in its process
group, would kill the wrapper before it could SIGKILL a node that ignores SIGTERM.

Written exactly as a third-party backend would be: it imports only :mod:`lofarexec`,
:mod:`lofarexec.backend`, :mod:`lofarexec.errors` and the backend toolkit
:mod:`lofarexec.transport`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import string
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from lofarexec import (
    Backend,
    BackendRegistry,
    ConfigError,
    JobHandle,
    LaunchRequest,
    hookimpl,
)
from lofarexec.backend import LaunchPreview, Report
from lofarexec.transport import (
    KILL_CONFIRM,
    AgentPool,
    ProcessLauncher,
    alive_interval_field,
    check_shared_settings,
    kill_grace_field,
    remote_launch,
    remote_python_field,
    start_through_wrapper,
)

#: Seconds that a wrapper inside the launcher's process group gets, after it has SIGKILLed the
#: node, to report and exit before the whole group is SIGKILLed.
KILL_MARGIN = 1.0
#: Placeholders that expand to several words, so must be a word of their own.
LIST_PLACEHOLDERS = frozenset({"env", "docker_env"})
#: Placeholders whose value is a job's own: not for a template run once per host (agent mode).
PER_JOB_PLACEHOLDERS = frozenset({"job_name", "nr_cores"}) | LIST_PLACEHOLDERS
LAUNCH_MODES = ("process", "agent")
PLACEHOLDERS = frozenset({"command", "host", "uid", "slurm_job_id", "docker_image", "job_name",
                          "nr_cores"}) | LIST_PLACEHOLDERS

Word = list[tuple[str, str | None]]
"""A template word, parsed: (literal text, placeholder name or None) pairs."""


@dataclasses.dataclass(frozen=True)
class CmdlineSettings:
    """``[cmdline]`` section of ``pipeline.cfg``."""

    config_fallbacks: ClassVar[dict[str, tuple[str, str]]] = {
        "template": ("remote", "cmdline"),  # the original framework's custom_cmdline
        "docker_image": ("docker", "image"),
    }
    """Read when [cmdline] does not set them (``[cmdline]`` wins)."""

    template: str = dataclasses.field(metadata={
        "help": "the launch command line, e.g. 'ssh {host} {command}'; placeholders: "
                + ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))})
    docker_image: str | None = dataclasses.field(
        default=None, metadata={"help": "the value of {docker_image}"})
    nr_cores: int = dataclasses.field(
        default=1, metadata={"help": "the value of {nr_cores}"})
    launch: str = dataclasses.field(
        default="process", metadata={"help": "'process': the template is run for every job; "
                                             "'agent': once per host, to start the host agent "
                                             "that starts the host's jobs (no per-job "
                                             "placeholders then)"})
    alive_interval: int = alive_interval_field(
        "agent mode: seconds between pings to each host agent; an agent that hears nothing "
        "for four intervals kills its jobs")
    remote_python: str = remote_python_field("the launch wrapper or host agent (where "
                                             "{command} runs)")
    kill_grace: float = kill_grace_field()
    words: tuple[Word, ...] = dataclasses.field(init=False, repr=False, compare=False)
    """The template, split and parsed once."""

    def __post_init__(self) -> None:
        check_shared_settings(self)
        words = parse_template(self.template)
        used = {name for word in words for _, name in word if name}
        if "command" not in used:
            raise ValueError("template has no {command}: the node would never run")
        if "docker_image" in used and not self.docker_image:
            raise ValueError("template uses {docker_image}: set 'docker_image = ...' "
                             "under [cmdline]")
        if self.launch not in LAUNCH_MODES:
            raise ValueError(f"launch must be one of {', '.join(LAUNCH_MODES)}")
        per_job = sorted(used & PER_JOB_PLACEHOLDERS)
        if self.launch == "agent" and per_job:
            names = ", ".join(f"{{{name}}}" for name in per_job)
            raise ValueError(f"launch = agent runs the template once per host, but it uses "
                             f"{names}, which differ per job: use launch = process")
        if self.nr_cores < 1:
            raise ValueError("nr_cores must be at least 1")
        object.__setattr__(self, "words", tuple(words))

    @property
    def placeholders(self) -> set[str]:
        """The placeholder names the template uses."""
        return {name for word in self.words for _, name in word if name}


def parse_template(template: str) -> list[Word]:
    """Split ``template`` into words and each word into literal text and placeholders.

    Raises ValueError naming what is wrong: unbalanced quotes or braces, an unknown placeholder,
    a conversion or format spec (``{host!r}``), a list placeholder inside a longer word.
    """
    try:
        tokens = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"template cannot be split into words: {exc}") from None
    if not tokens:
        raise ValueError("template is empty: give the launch command, e.g. 'ssh {host} {command}'")
    return [_parse_word(token) for token in tokens]


def _parse_word(token: str) -> Word:
    try:
        parts = list(string.Formatter().parse(token))
    except ValueError as exc:
        raise ValueError(f"template word {token!r}: {exc} (write {{{{ and }}}} for braces)") \
            from None
    word: Word = []
    for literal, name, spec, conversion in parts:
        if name is not None and name not in PLACEHOLDERS:
            known = ", ".join(sorted(PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {{{name}}} in template; known: {known}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} in template takes no '!' or ':' part")
        if name in LIST_PLACEHOLDERS and (literal or len(parts) > 1):
            raise ValueError(f"{{{name}}} expands to several words: it must be a word of its own")
        word.append((literal, name))
    return word


class CmdlineBackend(Backend):
    """Runs each node script through the command line that ``[cmdline] template`` describes."""

    name = "cmdline"
    # the end-of-run audit's command is started like a job: through the template, on the host
    audit = True
    Settings = CmdlineSettings

    def open(self) -> None:
        self._fixed = self._run_values()
        self._launcher = ProcessLauncher(
            kill_grace=self.settings.kill_grace + KILL_MARGIN, name="cmdline-jobs")
        self._launcher.start()
        self._agents = self._agent_pool()

    def _agent_pool(self) -> AgentPool:
        settings = self.settings
        return AgentPool(
            lambda host, command: self.command_line(_HostOnly(host), f"exec {command}"),
            program=settings.words[0][0][0] or "the template's program",
            python=settings.remote_python, kill_grace=settings.kill_grace,
            alive_interval=settings.alive_interval, orphan_timeout=10.0 + KILL_CONFIRM)

    def _run_values(self) -> dict[str, str]:
        """The placeholder values that are the same for every job of the run."""
        settings = self.settings
        values = {"uid": str(os.geteuid()), "nr_cores": str(settings.nr_cores),
                  "docker_image": settings.docker_image or ""}
        if "slurm_job_id" in settings.placeholders:
            job_id = os.environ.get("SLURM_JOB_ID")
            if not job_id:
                raise ConfigError("the template uses {slurm_job_id}, but SLURM_JOB_ID is not "
                                  "set: run inside a Slurm allocation (salloc/sbatch)",
                                  section="cmdline", key="template")
            values["slurm_job_id"] = job_id
        return values

    def command_line(self, request: LaunchRequest | _HostOnly, command: str) -> list[str]:
        """The launcher argv for ``request`` (or for a host, in agent mode), with ``command``
        as ``{command}``."""
        values = {**self._fixed, "host": request.host, "command": command,
                  "job_name": job_name(request.argv)}
        cores = getattr(request, "cores", None)  # a job's resources={"cores": N} wins
        if cores:
            values["nr_cores"] = str(cores)
        argv: list[str] = []
        for word in self.settings.words:
            name = word[0][1] if len(word) == 1 and not word[0][0] else None
            if name in LIST_PLACEHOLDERS:
                argv += environment_words(request.environment, docker=name == "docker_env")
            else:
                argv.append("".join(text + (values[key] if key else "") for text, key in word))
        return argv

    def start(self, request: LaunchRequest, report: Report) -> JobHandle:
        if self.settings.launch == "agent":
            return self._agents.start(request, report)
        return start_through_wrapper(
            self._launcher, request, report, self._job_command_line(request),
            python=self.settings.remote_python, kill_grace=self.settings.kill_grace)

    def _job_command_line(self, request: LaunchRequest) -> Callable[[str], list[str]]:
        """The template filled in for ``request``, given the wrapper's remote command."""
        return lambda command: self.command_line(request, f"exec {command}")

    def describe_launch(self, request: LaunchRequest) -> LaunchPreview:
        """The filled-in template for ``request`` (or for its host's agent)."""
        if not hasattr(self, "_fixed"):
            self._fixed = self._run_values()  # a ConfigError here would fail the run too
        if self.settings.launch == "agent":
            return LaunchPreview(tuple(self._agent_pool().agent_argv(request.host)),
                                 per_host=True,
                                 note="the job's argv, environment and token go to the agent "
                                      "as a start frame on the launcher's stdin")
        launch = remote_launch(request, python=self.settings.remote_python,
                               kill_grace=self.settings.kill_grace)
        return LaunchPreview(tuple(self._job_command_line(request)(launch.command)),
                             note="environment, token and status marker on the launcher's "
                                  "stdin")

    def close(self) -> None:
        launcher = getattr(self, "_launcher", None)
        if launcher is not None:
            self._agents.close()
            launcher.close()
            self._launcher = None  # type: ignore[assignment]


class _HostOnly:
    """What agent mode fills a template from: a host, no job (the settings made sure that the
    template uses nothing of a job's)."""

    __slots__ = ("host",)
    argv: tuple[str, ...] = ("",)
    environment: Mapping[str, str] = {}

    def __init__(self, host: str) -> None:
        self.host = host


def environment_words(environment: Mapping[str, str], *, docker: bool) -> list[str]:
    """``NAME=value`` words (each after ``-e`` for docker) for the node's variables."""
    words: list[str] = []
    for name, value in environment.items():
        words += ["-e", f"{name}={value}"] if docker else [f"{name}={value}"]
    return words


def job_name(argv: Sequence[str]) -> str:
    """The node script's name: ``python3 -u /x/dppp.py ...`` gives ``dppp.py``."""
    first = os.path.basename(argv[0])
    if first.startswith("python"):
        for word in argv[1:]:
            if not word.startswith("-"):
                return os.path.basename(word)
    return first


@hookimpl
def lofarexec_register_backends(registry: BackendRegistry) -> None:
    registry.add(CmdlineBackend)


__all__ = ["CmdlineBackend", "CmdlineSettings", "parse_template"]

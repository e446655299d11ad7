"""Which sections and keys a ``pipeline.cfg`` may hold: a misspelt one is an error, not a no-op.

Checked once per recipe, right after the file is read (:func:`check_names`), so that
``[remote] job_timout = 3`` or ``[remtoe]`` stops the run before any job starts instead of
silently removing a limit or choosing another backend. The keys of lofarexec's own sections are
listed here (every key it reads; ``tests/config/test_known.py`` keeps the list equal to the
keys the code reads). The original LOFAR framework's ``pipeline.cfg`` files carry more keys and
sections; those stay valid, so an existing file keeps working, and a debug line says lofarexec
ignores them. Backends' sections are checked against their settings class elsewhere
(:mod:`lofarexec.config.settings`); a recipe declares sections of its own in its
``config_sections`` attribute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from lofarexec.errors import ConfigError

if TYPE_CHECKING:
    from lofarexec.config.pipeline import PipelineConfig

__all__ = ["KEYS_READ", "ORIGINAL_KEYS", "ORIGINAL_SECTIONS", "check_names"]

_log = logging.getLogger(__name__)

#: The keys lofarexec reads in the sections whose keys are checked.
KEYS_READ: dict[str, frozenset[str]] = {
    "layout": frozenset({"job_directory"}),
    "deploy": frozenset({"engine_ppath", "engine_lpath"}),
    "remote": frozenset({"method", "max_per_node", "max_jobs", "job_timeout",
                         "forward_environment", "node_arguments", "retries",
                         "retry_exit_codes", "host_failures", "host_down_after", "halt",
                         "idle_timeout", "audit"}),
    "logging": frozenset({"log_file", "bind_address", "advertise_address", "format",
                          "datefmt", "max_message_mib", "max_kept_mib", "progress_interval"}),
    "cluster": frozenset({"hosts"}),
}

#: Keys the original framework's ``pipeline.cfg`` files (the seed's and the trunk's) carry in
#: those sections and lofarexec does not use: accepted, with a debug line.
ORIGINAL_KEYS: dict[str, frozenset[str]] = {
    "layout": frozenset({"parset_directory", "vds_directory", "results_directory",
                         "log_directory", "mapfile_directory"}),
    "deploy": frozenset({"script_path", "controller_ppath"}),
    "remote": frozenset({"globalfs", "cmdline"}),
    "logging": frozenset({"xml_stat_file"}),
    "cluster": frozenset({"clusterdesc", "task_directory"}),
}

#: Sections of the original framework's files that lofarexec does not read itself (a backend
#: may: ``[docker] image`` is the cmdline backend's ``docker_image``). Their keys are not checked.
ORIGINAL_SECTIONS = frozenset({"feedback", "docker"})

#: Sections whose keys are data (host names), not fixed names.
DATA_SECTIONS = frozenset({"max_per_node"})


def check_names(
    config: PipelineConfig,
    *,
    backend_sections: Iterable[str],
    recipe_sections: Iterable[str] = (),
    fallback_keys: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Raise :class:`ConfigError` for the first unknown section or key of ``config``.

    ``backend_sections`` are the installed backends' names (their keys are checked when one is
    chosen), ``recipe_sections`` the running recipe's own, ``fallback_keys`` the
    ``{section: keys}`` that backends' settings read elsewhere (``config_fallbacks``). The
    message names file, section and key and the closest known name ("did you mean ...?").
    """
    extra_keys = {section: set(keys) for section, keys in (fallback_keys or {}).items()}
    free_sections = {*backend_sections, *recipe_sections, *ORIGINAL_SECTIONS, *DATA_SECTIONS,
                     *extra_keys}
    known_sections = {*KEYS_READ, *free_sections}
    for section in config.sections():
        if section not in known_sections:
            raise _unknown(config, "unknown section", section, None,
                           sorted(known_sections), f"[{section}]")
        if section not in KEYS_READ:
            continue
        known_keys = KEYS_READ[section] | ORIGINAL_KEYS[section] | extra_keys.get(section, set())
        for key in config.section_keys(section):
            if key not in known_keys:
                raise _unknown(config, "unknown key", section, key, sorted(known_keys), key)
            if key in ORIGINAL_KEYS[section] and key not in extra_keys.get(section, ()):
                _log.debug("%s: [%s] %s is the original framework's key; lofarexec ignores it",
                           config.path, section, key)


def _unknown(config: PipelineConfig, what: str, section: str, key: str | None,
             known: list[str], name: str) -> ConfigError:
    candidates = known if key is not None else [f"[{known_name}]" for known_name in known]
    import difflib  # deferred: only a misspelt name needs it (start-up, issue 17)

    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(candidates)};"
    if key is not None:
        remedy = "fix the name, or remove the line"
    else:
        remedy = ("fix the name, or remove the section (a recipe declares sections of its own "
                  "in its config_sections attribute)")
    return ConfigError(f"{what}, {hint} {remedy}", filename=str(config.path),
                       section=section, key=key)

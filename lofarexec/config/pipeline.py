"""Typed access to a parsed ``pipeline.cfg``: :func:`load_config` and :class:`PipelineConfig`.

INI, as in the original LOFAR pipeline framework, read with ``BasicInterpolation``: besides the
file's keys, ``job_name``, ``start_time``, ``cwd`` and ``config_directory`` (the file's folder)
can be referred to from every section as ``%(name)s``; a literal percent sign is ``%%``.
Finding and parsing the file is :mod:`lofarexec.config.files`, the value parsers
:mod:`lofarexec.config.values`, backend settings :mod:`lofarexec.config.settings`. Every problem
(missing key, bad value, dangling reference) is a one-line :class:`ConfigError` naming file,
section and key and saying what to do; configparser's own exceptions never escape.
"""

from __future__ import annotations

import configparser
import enum
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from lofarexec.config.files import DEFAULT_SECTION, StrPath, find_config, read_config
from lofarexec.config.parsercalls import ConfigParserCalls, MissingOptionError, MissingSectionError
from lofarexec.config.settings import settings_from_section
from lofarexec.config.values import (
    parse_bool,
    parse_exit_codes,
    parse_float,
    parse_halt,
    parse_int,
    parse_list,
    parse_path,
    parse_positive_float,
    split_search_path,
)
from lofarexec.errors import ConfigError
from lofarexec.job import NODE_ARGUMENT_MODES, NODE_ARGUMENTS_COMMAND_LINE

# find_config is re-exported: lofarexec.config.pipeline was its home before files.py.
__all__ = ["PipelineConfig", "find_config", "load_config"]

_PERCENT_HINT = "write %% for a literal percent sign"

_T = TypeVar("_T")
_V = TypeVar("_V")
_S = TypeVar("_S")


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


def load_config(
    path: StrPath,
    *,
    job_name: str,
    start_time: str,
    cwd: str | None = None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> PipelineConfig:
    """Read and parse ``path``; called once per run, after :func:`find_config`.

    ``job_name``, ``start_time``, ``cwd`` (default: the process's working directory) and
    ``config_directory`` are put in ``[DEFAULT]`` unless the file sets them itself.
    ``overrides`` (``{section: {key: value}}``, e.g. from the command line) are applied last, as
    if written in the file. Raises :class:`ConfigError` if the file cannot be read or parsed.
    """
    path = Path(path)
    parser, own_keys = read_config(path)
    extras = {
        "job_name": job_name,
        "start_time": start_time,
        "cwd": cwd if cwd is not None else os.getcwd(),
        "config_directory": os.path.dirname(os.path.abspath(path)),
    }
    for key, value in extras.items():
        if not parser.has_option(DEFAULT_SECTION, key):
            parser.set(DEFAULT_SECTION, key, value.replace("%", "%%"))
    config = PipelineConfig(parser, path=path, own_keys=own_keys, cwd=extras["cwd"])
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            config.set(section, key, value)
    return config


class PipelineConfig(ConfigParserCalls):
    """A parsed ``pipeline.cfg`` with typed accessors; build one with :func:`load_config`.

    It also answers the :mod:`configparser` calls older recipes make (``has_option``,
    ``getboolean``, ``items``, ...: :class:`~lofarexec.config.parsercalls.ConfigParserCalls`).

    Accessors return ``fallback`` when the key (or its section) is absent; without one an absent
    key is a :class:`ConfigError`. A value that is present but bad is always an error. Keys are
    case-insensitive, as in configparser; a section sees ``[DEFAULT]``'s keys unless it sets them.
    """

    def __init__(
        self,
        parser: configparser.ConfigParser,
        *,
        path: StrPath,
        own_keys: Mapping[str, list[str]],
        cwd: str,
    ) -> None:
        self._parser = parser
        self.path = Path(path)
        """The file this configuration was read from."""
        self._own_keys = {section: list(keys) for section, keys in own_keys.items()}
        self._cwd = cwd

    def __repr__(self) -> str:
        return f"PipelineConfig(path={str(self.path)!r})"

    def has_section(self, name: str) -> bool:
        """Whether the file (or :meth:`set`) defines ``[name]``; ``[DEFAULT]`` never counts."""
        return self._parser.has_section(name)

    def sections(self) -> list[str]:
        """The names of all sections except ``[DEFAULT]``, in file order."""
        return self._parser.sections()

    def section_keys(self, section: str) -> list[str]:
        """The keys ``[section]`` sets itself, without those inherited from ``[DEFAULT]``.

        Use this whenever the keys themselves carry meaning (host names, backend settings).
        """
        return list(self._own_keys.get(section, []))

    def set(self, section: str, key: str, value: str, *, literal: bool = False) -> None:
        """Set ``key`` in ``section`` (created if absent), as a recipe option such as ``-r`` does.

        The value is interpolated like a line of the file, unless ``literal`` is true.
        """
        key = self._parser.optionxform(key)
        if section != DEFAULT_SECTION and not self._parser.has_section(section):
            self._parser.add_section(section)
        try:
            self._parser.set(section, key, value.replace("%", "%%") if literal else value)
        except ValueError as exc:  # BasicInterpolation refuses a '%' that starts no reference
            message = f"value {value!r} has a '%' that starts no %(name)s; {_PERCENT_HINT}"
            raise self._error(message, section, key) from exc
        keys = self._own_keys.setdefault(section, [])
        if key not in keys:
            keys.append(key)

    # ---- typed accessors

    def get(
        self, section: str, key: str, fallback: _T | _Missing = _MISSING, *, raw: bool = False
    ) -> str | _T:
        """``key`` as text; ``raw=True`` skips interpolation (for %-templates: a log format)."""
        value = self._lookup(section, key, raw=raw)
        return self._absent(section, key, fallback) if isinstance(value, _Missing) else value

    def get_int(
        self, section: str, key: str, fallback: _T | _Missing = _MISSING, minimum: int | None = None
    ) -> int | _T:
        """``key`` as a whole number, at least ``minimum`` if given."""
        return self._typed(section, key, fallback, lambda text: parse_int(text, minimum))

    def get_float(
        self,
        section: str,
        key: str,
        fallback: _T | _Missing = _MISSING,
        minimum: float | None = None,
    ) -> float | _T:
        """``key`` as a finite number, at least ``minimum`` if given."""
        return self._typed(section, key, fallback, lambda text: parse_float(text, minimum))

    def get_bool(self, section: str, key: str, fallback: _T | _Missing = _MISSING) -> bool | _T:
        """``key`` as a flag, in the words ``getboolean`` knows: yes/no, true/false, on/off, 1/0."""
        return self._typed(section, key, fallback, parse_bool)

    def get_list(
        self, section: str, key: str, fallback: _T | _Missing = _MISSING
    ) -> list[str] | _T:
        """``key`` as a list: ``[a, b, c]`` (the original's syntax) or ``a, b, c``; never eval'd.

        Items are split at commas or newlines and stripped, quotes around an item are removed
        and empty items dropped, so an empty value or ``[]`` is an empty list.
        """
        return self._typed(section, key, fallback, parse_list)

    def get_path(self, section: str, key: str, fallback: _T | _Missing = _MISSING) -> Path | _T:
        """``key`` as a path, ``~`` expanded; a relative path is left relative."""
        return self._typed(section, key, fallback, parse_path)

    def section_settings(self, section: str, settings_class: type[_S]) -> _S:
        """Fill a backend's settings dataclass from the keys ``[section]`` itself sets.

        Called when the backend is chosen, so a typo in its section fails the run at once. Keys
        are the field names (``-`` may stand for ``_``); absent keys keep the field defaults, an
        absent section gives all defaults. Field types: ``str``, ``int``, ``float``, ``bool``,
        ``list[str]``, ``tuple[str, ...]``, or one of those ``| None`` (an empty value is None);
        any other type is a ``TypeError``, raised even when the key is not set.

        A settings class may name, in a ``config_fallbacks`` class attribute, where else a field
        is read when ``[section]`` does not set it: ``{"template": ("remote", "cmdline")}``
        (read raw: templates hold braces and percent signs, not interpolations).
        """
        return settings_from_section(self, section, settings_class)

    def has_option_raw(self, section: str, key: str) -> bool:
        """Whether ``[section]`` itself sets ``key`` (DEFAULT's keys do not count)."""
        return key in self.section_keys(section) if self.has_section(section) else False

    # ---- well-known settings

    @property
    def runtime_directory(self) -> Path:
        """``[DEFAULT] runtime_directory``: where jobs, logs and results live; required."""
        return self.get_path(DEFAULT_SECTION, "runtime_directory")

    @property
    def working_directory(self) -> Path:
        """``[DEFAULT] working_directory``; the current directory when absent."""
        return self.get_path(DEFAULT_SECTION, "working_directory", fallback=Path(self._cwd))

    @property
    def recipe_directories(self) -> list[Path]:
        """``[DEFAULT] recipe_directories``: the folders holding ``master/`` and ``nodes/``.

        Recipes may read it; ``lofarexec run NAME`` searches it for ``master/NAME.py`` (then
        ``NAME.py``) and ``lofarexec check-hosts`` looks for ``nodes/`` on the hosts. Empty when
        absent.
        """
        return self._typed(DEFAULT_SECTION, "recipe_directories", [],
                           lambda text: [parse_path(folder) for folder in parse_list(text)])

    @property
    def job_directory(self) -> Path:
        """``[layout] job_directory``; ``<runtime_directory>/jobs/<job_name>`` when absent."""
        configured = self.get_path("layout", "job_directory", fallback=None)
        if configured is not None:
            return configured
        return self.runtime_directory / "jobs" / self.get(DEFAULT_SECTION, "job_name")

    @property
    def log_file(self) -> Path | None:
        """``[logging] log_file``: the pipeline log; ``None`` when absent."""
        return self.get_path("logging", "log_file", fallback=None)

    @property
    def max_message_bytes(self) -> int:
        """``[logging] max_message_mib``: largest frame a node may send (MiB, default 64)."""
        return self.get_int("logging", "max_message_mib", fallback=64, minimum=1) << 20

    @property
    def max_kept_bytes(self) -> int:
        """``[logging] max_kept_mib``: node outputs and board values held at once (MiB, 256)."""
        return self.get_int("logging", "max_kept_mib", fallback=256, minimum=1) << 20

    @property
    def engine_ppath(self) -> list[str]:
        """``[deploy] engine_ppath``: prepended to the node's PYTHONPATH; empty when absent."""
        return split_search_path(self.get("deploy", "engine_ppath", fallback=""))

    @property
    def engine_lpath(self) -> list[str]:
        """``[deploy] engine_lpath``: prepended to the node's LD_LIBRARY_PATH; empty when absent."""
        return split_search_path(self.get("deploy", "engine_lpath", fallback=""))

    @property
    def remote_method(self) -> str | None:
        """``[remote] method``, lower-cased: the backend's name; ``None`` when absent."""
        method = self.get("remote", "method", fallback=None)
        if method is not None and not method.strip():
            message = "is empty; name a backend such as 'local', or remove the line"
            raise self._error(message, "remote", "method")
        return None if method is None else method.strip().lower()

    @property
    def max_per_node(self) -> int | None:
        """``[remote] max_per_node``: jobs at once on one host; ``None`` (no limit) when absent."""
        return self.get_int("remote", "max_per_node", fallback=None, minimum=1)

    @property
    def max_jobs(self) -> int | None:
        """``[remote] max_jobs``: jobs at once over all hosts; ``None`` (no limit) when absent."""
        return self.get_int("remote", "max_jobs", fallback=None, minimum=1)

    @property
    def node_arguments(self) -> str:
        """``[remote] node_arguments``: ``command_line`` (the seed's nodes, the default) or
        ``stored`` (the later framework's ``LOFARnodeTCP`` nodes fetch typed arguments)."""
        value = self.get("remote", "node_arguments", fallback=NODE_ARGUMENTS_COMMAND_LINE)
        value = value.strip().lower()
        if value not in NODE_ARGUMENT_MODES:
            message = (f"value {value!r} is not a way to pass arguments; write 'stored' (nodes "
                       "that call run_with_stored_arguments) or 'command_line' (the seed's)")
            raise self._error(message, "remote", "node_arguments")
        return value

    @property
    def job_timeout(self) -> float | None:
        """``[remote] job_timeout``: seconds a job may run; ``None`` (no limit) when absent."""
        return self._typed("remote", "job_timeout", None, parse_positive_float)

    @property
    def retries(self) -> int | None:
        """``[remote] retries``: retries of a transport error; ``None`` (the default) when
        absent."""
        return self.get_int("remote", "retries", fallback=None, minimum=0)

    @property
    def retry_exit_codes(self) -> frozenset[int]:
        """``[remote] retry_exit_codes``: node exit statuses that are retried; none when absent."""
        return self._typed("remote", "retry_exit_codes", frozenset(), parse_exit_codes)

    @property
    def host_failures(self) -> int | None:
        """``[remote] host_failures``: transport failures in a row that quarantine a host."""
        return self.get_int("remote", "host_failures", fallback=None, minimum=1)

    @property
    def host_down_after(self) -> float | None:
        """``[remote] host_down_after``: seconds a paused host may stay down; no limit when
        absent."""
        return self._typed("remote", "host_down_after", None, parse_positive_float)

    @property
    def halt(self) -> tuple[str, int | None, float | None]:
        """``[remote] halt``: (mode, count, percent), as GNU parallel's ``--halt``; never when
        absent."""
        return self._typed("remote", "halt", ("never", None, None), parse_halt)

    @property
    def max_per_node_overrides(self) -> dict[str, int]:
        """``[max_per_node]``: ``host = N`` limits that beat ``[remote] max_per_node``.

        Host names come lower-cased (configparser folds keys; DNS names ignore case anyway).
        """
        hosts = self.section_keys("max_per_node")
        return {host: self.get_int("max_per_node", host, minimum=1) for host in hosts}

    # ---- internals

    def _error(self, message: str, section: str | None, key: str | None = None) -> ConfigError:
        return ConfigError(message, filename=str(self.path), section=section, key=key)

    def _lookup(self, section: str, key: str, *, raw: bool = False) -> str | _Missing:
        """The value or MISSING; interpolation happens here, lazily, and so do its errors."""
        if not self._parser.has_option(section, key):
            return _MISSING
        try:
            return self._parser.get(section, key, raw=raw)
        except configparser.InterpolationMissingOptionError as exc:
            message = (
                f"refers to %({exc.reference})s, which is set neither in [{section}] nor in "
                f"[DEFAULT]; define it, or {_PERCENT_HINT}"
            )
            raise self._error(message, section, key) from exc
        except configparser.InterpolationDepthError as exc:
            message = "its %(name)s references nest too deeply; look for a key naming itself"
            raise self._error(message, section, key) from exc
        except configparser.InterpolationError as exc:
            raw_value = self._parser.get(section, key, raw=True)
            message = f"value {raw_value!r} has a '%' that starts no %(name)s; {_PERCENT_HINT}"
            raise self._error(message, section, key) from exc

    def _absent(self, section: str, key: str, fallback: _T | _Missing) -> _T:
        if not isinstance(fallback, _Missing):
            return fallback
        if section != DEFAULT_SECTION and not self._parser.has_section(section):
            message = f"the section is missing; add [{section}] with a line '{key} = ...'"
            raise MissingSectionError(message, filename=str(self.path), section=section, key=key)
        message = f"is missing; add '{key} = ...' under [{section}]"
        raise MissingOptionError(message, filename=str(self.path), section=section, key=key)

    def _typed(
        self, section: str, key: str, fallback: _T | _Missing, parse: Callable[[str], _V]
    ) -> _V | _T:
        text = self._lookup(section, key)
        if isinstance(text, _Missing):
            return self._absent(section, key, fallback)
        try:
            return parse(text)
        except ValueError as exc:
            raise self._error(f"value {text!r} {exc}", section, key) from exc


"""``pipeline.cfg``: where it is found, how it is read, and typed access to its values.

INI, as in the original LOFAR pipeline framework, read with ``BasicInterpolation``: besides the
file's keys, ``job_name``, ``start_time``, ``cwd`` and ``config_directory`` (the file's folder)
can be referred to from every section as ``%(name)s``; a literal percent sign is ``%%``.
Search order (:func:`find_config`): ``-c FILE``, ``pipeline.cfg`` in the recipe's folder, then in
the working directory, then ``~/.pipeline.cfg``. Every problem (unreadable file, syntax error,
missing key, bad value, dangling reference) is a one-line :class:`ConfigError` naming file,
section and key and saying what to do; configparser's own exceptions never escape this module.
"""

from __future__ import annotations

import configparser
import dataclasses
import enum
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lofarexec.errors import ConfigError

__all__ = ["PipelineConfig", "find_config", "load_config"]

StrPath = str | os.PathLike[str]

CONFIG_FILENAME = "pipeline.cfg"
HOME_CONFIG_FILENAME = ".pipeline.cfg"
DEFAULT_SECTION = "DEFAULT"

# How a section's OWN keys are told from those configparser copies into it from [DEFAULT]: the
# text is parsed a second time, without interpolation, by a parser whose default section has a
# name no header can produce (a header never spans lines). There [DEFAULT] is an ordinary
# section and every section lists exactly the keys written under it. Comparing values with
# DEFAULT's would miss a key a section sets to the same value; ``parser._sections`` is private.
_NO_DEFAULT_SECTION = "\nlofarexec: no default section\n"
_REPR_NEWLINE = "\\n"
_PERCENT_HINT = "write %% for a literal percent sign"
_BOOL_WORDS = {"yes": True, "true": True, "on": True, "1": True}
_BOOL_WORDS |= {"no": False, "false": False, "off": False, "0": False}
_LIST_SEPARATOR = re.compile(r"[,\n]")

_T = TypeVar("_T")
_V = TypeVar("_V")
_S = TypeVar("_S")


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


# --------------------------------------------------------------------------- finding and loading


def find_config(
    explicit: StrPath | None,
    *,
    recipe_directory: StrPath | None,
    working_directory: StrPath | None,
    home: StrPath | None = None,
) -> Path:
    """Return the ``pipeline.cfg`` a run should use; called once, before :func:`load_config`.

    ``explicit`` (``-c FILE``) wins, and if it is not a file that is an error, never a silent
    fallback to another file. Otherwise the first file of ``<recipe_directory>/pipeline.cfg``,
    ``<working_directory>/pipeline.cfg`` and ``<home>/.pipeline.cfg`` (``home`` defaults to the
    user's home) is returned; a folder given as ``None`` is skipped.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            problem = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(
                f"the file given with -c {problem}; check the path", filename=str(path)
            )
        return path
    folders = [folder for folder in (recipe_directory, working_directory) if folder is not None]
    candidates = [Path(folder) / CONFIG_FILENAME for folder in folders]
    candidates.append(Path(home if home is not None else Path.home()) / HOME_CONFIG_FILENAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise ConfigError(f"no {CONFIG_FILENAME} found (looked for {looked}); pass -c FILE to name one")


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
    parser, own_keys = _parse(_read_text(path), str(path))
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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot be read ({exc.strerror or exc}); check that it is a readable file"
        raise ConfigError(message, filename=str(path)) from exc
    except UnicodeDecodeError as exc:
        message = f"is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        raise ConfigError(message, filename=str(path)) from exc


def _parse(text: str, filename: str) -> tuple[configparser.ConfigParser, dict[str, list[str]]]:
    """Parse ``text``; return the interpolating parser and each section's own keys."""
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    # strict=False: duplicates were already refused by the first parse, and a repeated
    # [DEFAULT] header, legal there, would be a duplicate section here.
    lister = configparser.ConfigParser(
        interpolation=None, strict=False, default_section=_NO_DEFAULT_SECTION
    )
    try:
        parser.read_string(text, source=filename)
        lister.read_string(text, source=filename)
    except configparser.Error as exc:
        section, key = getattr(exc, "section", None), getattr(exc, "option", None)
        message = _describe_parse_error(exc)
        raise ConfigError(message, filename=filename, section=section, key=key) from exc
    return parser, {section: list(lister[section]) for section in lister.sections()}


def _describe_parse_error(exc: configparser.Error) -> str:
    """One line for configparser's (often multi-line) parse errors, with the line number."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return (
            f"line {exc.lineno}: {exc.line.strip()!r} comes before any [section] header; "
            "start the file with a header such as [DEFAULT]"
        )
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: the section appears twice; merge the two into one"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: the key is set twice in this section; keep one"
    if isinstance(exc, configparser.ParsingError):
        # configparser keeps each bad line as repr(line), its newline included as \n
        bad = [f"line {lineno}: {line.replace(_REPR_NEWLINE, '')}" for lineno, line in exc.errors]
        bad_lines = ", ".join(bad)
        return f"cannot parse {bad_lines}; write 'key = value' lines under a [section] header"
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- the configuration


class PipelineConfig:
    """A parsed ``pipeline.cfg`` with typed accessors; build one with :func:`load_config`.

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
        return self._typed(section, key, fallback, lambda text: _parse_int(text, minimum))

    def get_float(
        self,
        section: str,
        key: str,
        fallback: _T | _Missing = _MISSING,
        minimum: float | None = None,
    ) -> float | _T:
        """``key`` as a finite number, at least ``minimum`` if given."""
        return self._typed(section, key, fallback, lambda text: _parse_float(text, minimum))

    def get_bool(self, section: str, key: str, fallback: _T | _Missing = _MISSING) -> bool | _T:
        """``key`` as a flag: yes/no, true/false, on/off or 1/0, in any case."""
        return self._typed(section, key, fallback, _parse_bool)

    def get_list(
        self, section: str, key: str, fallback: _T | _Missing = _MISSING
    ) -> list[str] | _T:
        """``key`` as a list: ``[a, b, c]`` (the original's syntax) or ``a, b, c``; never eval'd.

        Items are split at commas or newlines and stripped, quotes around an item are removed
        and empty items dropped, so an empty value or ``[]`` is an empty list.
        """
        return self._typed(section, key, fallback, _parse_list)

    def get_path(self, section: str, key: str, fallback: _T | _Missing = _MISSING) -> Path | _T:
        """``key`` as a path, ``~`` expanded; a relative path is left relative."""
        return self._typed(section, key, fallback, _parse_path)

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
        fields = _settings_fields(settings_class)
        values: dict[str, Any] = {}
        fallbacks: dict[str, tuple[str, str]] = getattr(settings_class, "config_fallbacks", {})
        for name, (other_section, other_key) in fallbacks.items():
            if self.has_option_raw(other_section, other_key):
                values[name] = self.get(other_section, other_key, raw=True)
        for key in self.section_keys(section):
            name = key.replace("-", "_")
            if name not in fields:
                known = ", ".join(sorted(fields)) or "none"
                message = f"unknown key for {settings_class.__name__}; known keys: {known}"
                raise self._error(message, section, key)
            if name in values and name not in fallbacks:
                raise self._error(f"'{name}' is set twice (with - and _); keep one", section, key)
            values[name] = self._field_value(section, key, *fields[name])
        for name, (field, _kind) in fields.items():
            if name not in values and _is_required(field):
                message = f"is missing; add '{name} = ...' under [{section}]"
                raise self._error(message, section, name)
        try:
            return settings_class(**values)
        except ValueError as exc:  # the dataclass's own __post_init__ checks
            raise self._error(" ".join(str(exc).split()), section) from exc

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
        """``[DEFAULT] recipe_directories``: folders searched for recipes; empty when absent."""
        listed = self.get_list(DEFAULT_SECTION, "recipe_directories", fallback=[])
        return [Path(folder).expanduser() for folder in listed]

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
    def engine_ppath(self) -> list[str]:
        """``[deploy] engine_ppath``: prepended to the node's PYTHONPATH; empty when absent."""
        return _split_search_path(self.get("deploy", "engine_ppath", fallback=""))

    @property
    def engine_lpath(self) -> list[str]:
        """``[deploy] engine_lpath``: prepended to the node's LD_LIBRARY_PATH; empty when absent."""
        return _split_search_path(self.get("deploy", "engine_lpath", fallback=""))

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
    def job_timeout(self) -> float | None:
        """``[remote] job_timeout``: seconds a job may run; ``None`` (no limit) when absent."""
        return self._typed("remote", "job_timeout", None, _parse_positive_float)

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
        else:
            message = f"is missing; add '{key} = ...' under [{section}]"
        raise self._error(message, section, key)

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

    def _field_value(self, section: str, key: str, field: dataclasses.Field[Any], kind: Any) -> Any:
        text = self.get(section, key)
        try:
            return _converter_for(kind)(text)
        except ValueError as exc:
            help_text = field.metadata.get("help")
            about = f" ({field.name}: {help_text})" if help_text else ""
            message = f"value {text!r} {exc}; expected {_type_name(kind)}{about}"
            raise self._error(message, section, key) from exc


# --------------------------------------------------------------------------- value parsers
# Each raises ValueError whose text completes "value 'x' ...": what is wrong and what to do.


def _parse_int(text: str, minimum: int | None = None) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError("is not a whole number; write one such as 4") from None
    _check_minimum(number, minimum)
    return number


def _parse_float(text: str, minimum: float | None = None) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError("is not a number; write one such as 2.5") from None
    if not math.isfinite(number):
        raise ValueError("is not a finite number; write one such as 2.5")
    _check_minimum(number, minimum)
    return number


def _check_minimum(number: float, minimum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ValueError(f"is less than {minimum}; write {minimum} or more")


def _parse_positive_float(text: str) -> float:
    number = _parse_float(text)
    if number <= 0:
        raise ValueError("is not positive; write a number of seconds above 0, or remove the line")
    return number


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _BOOL_WORDS:
        return _BOOL_WORDS[word]
    raise ValueError("is not a yes/no value; write yes, no, true, false, on, off, 1 or 0")


def _parse_list(text: str) -> list[str]:
    body = text.strip()
    if body.startswith("[") != body.endswith("]"):
        raise ValueError("has an unmatched bracket; write [a, b, c] or a, b, c")
    if body.startswith("["):
        body = body[1:-1]
    items = (_unquote(item.strip()) for item in _LIST_SEPARATOR.split(body))
    return [item for item in items if item]


def _unquote(item: str) -> str:
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        return item[1:-1].strip()
    return item


def _parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("is empty; write a path, or remove the line")
    return Path(text.strip()).expanduser()


def _split_search_path(text: str) -> list[str]:
    return [part.strip() for part in text.split(":") if part.strip()]


# --------------------------------------------------------------------------- settings dataclasses

_SCALAR_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: lambda text: text,
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
}


def _settings_fields(settings_class: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Map each init field of ``settings_class`` to (field, resolved type); check every type."""
    if not (isinstance(settings_class, type) and dataclasses.is_dataclass(settings_class)):
        raise TypeError(f"settings class {settings_class!r} is not a dataclass")
    try:
        hints = typing.get_type_hints(settings_class)
    except NameError as exc:  # an annotation naming something not importable at module level
        raise TypeError(f"cannot resolve the field types of {settings_class!r}: {exc}") from exc
    fields: dict[str, tuple[dataclasses.Field[Any], Any]] = {}
    for field in dataclasses.fields(settings_class):
        if field.init:
            _converter_for(hints[field.name])  # fail for the plugin author, not per user key
            fields[field.name] = (field, hints[field.name])
    return fields


def _converter_for(kind: Any) -> Callable[[str], Any]:
    if kind in _SCALAR_PARSERS:
        return _SCALAR_PARSERS[kind]
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list and args == (str,):
        return _parse_list
    if origin is tuple and args == (str, Ellipsis):
        return lambda text: tuple(_parse_list(text))
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _converter_for(args[0] if args[1] is type(None) else args[1])
        return lambda text: inner(text) if text.strip() else None
    raise TypeError(
        f"settings field type {kind!r} is not supported; use str, int, float, bool, "
        "list[str], tuple[str, ...], or one of those | None"
    )


def _type_name(kind: Any) -> str:
    return kind.__name__ if kind in _SCALAR_PARSERS else str(kind).replace("typing.", "")


def _is_required(field: dataclasses.Field[Any]) -> bool:
    no_factory = field.default_factory is dataclasses.MISSING
    return field.default is dataclasses.MISSING and no_factory

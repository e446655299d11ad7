"""A backend's settings dataclass, filled from and checked against its ``[<method>]`` section.

Called when the backend is chosen, so a mistake in its section fails the run before any job
starts: an unknown key or a bad value is a one-line :class:`ConfigError` naming file, section
and key (and the field's help text). The field types map to the value parsers of
:mod:`lofarexec.config.values`; a type without one is the plugin author's ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lofarexec.config.values import parse_bool, parse_float, parse_int, parse_list
from lofarexec.errors import ConfigError

if TYPE_CHECKING:
    from lofarexec.config.pipeline import PipelineConfig

__all__ = ["settings_from_section"]

_S = TypeVar("_S")

_SCALAR_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: lambda text: text,
    int: parse_int,
    float: parse_float,
    bool: parse_bool,
}


def settings_from_section(config: PipelineConfig, section: str, settings_class: type[_S]) -> _S:
    """Fill ``settings_class`` from the keys ``[section]`` itself sets (see
    :meth:`PipelineConfig.section_settings`, which documents the rules)."""
    fields = _settings_fields(settings_class)
    values: dict[str, Any] = {}
    fallbacks: dict[str, tuple[str, str]] = getattr(settings_class, "config_fallbacks", {})
    for name, (other_section, other_key) in fallbacks.items():
        if config.has_option_raw(other_section, other_key):
            values[name] = config.get(other_section, other_key, raw=True)
    for key in config.section_keys(section):
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            message = f"unknown key for {settings_class.__name__}; known keys: {known}"
            raise _error(config, message, section, key)
        if name in values and name not in fallbacks:
            raise _error(config, f"'{name}' is set twice (with - and _); keep one", section, key)
        values[name] = _field_value(config, section, key, *fields[name])
    for name, (field, _kind) in fields.items():
        if name not in values and _is_required(field):
            message = f"is missing; add '{name} = ...' under [{section}]"
            raise _error(config, message, section, name)
    try:
        return settings_class(**values)
    except ValueError as exc:  # the dataclass's own __post_init__ checks
        raise _error(config, " ".join(str(exc).split()), section) from exc


def _error(
    config: PipelineConfig, message: str, section: str, key: str | None = None
) -> ConfigError:
    return ConfigError(message, filename=str(config.path), section=section, key=key)


def _field_value(
    config: PipelineConfig, section: str, key: str, field: dataclasses.Field[Any], kind: Any
) -> Any:
    text = config.get(section, key)
    try:
        return _converter_for(kind)(text)
    except ValueError as exc:
        help_text = field.metadata.get("help")
        about = f" ({field.name}: {help_text})" if help_text else ""
        message = f"value {text!r} {exc}; expected {_type_name(kind)}{about}"
        raise _error(config, message, section, key) from exc


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
        return parse_list
    if origin is tuple and args == (str, Ellipsis):
        return lambda text: tuple(parse_list(text))
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

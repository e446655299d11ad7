"""The :mod:`configparser` calls the original framework's recipes make on ``self.config``.

Trunk recipes ask ``self.config.has_option("remote", "globalfs")``,
``self.config.getboolean(...)``, ``items("DEFAULT")`` and catch ``NoOptionError`` around
``get``; :class:`~lofarexec.config.PipelineConfig` answers them through this mixin with its own
typed accessors, so values are checked the same way and a bad one is still one
:class:`~lofarexec.errors.ConfigError` line. A missing key or section is also configparser's
``NoOptionError``/``NoSectionError``, so those ``except`` clauses keep working.
"""

from __future__ import annotations

import configparser
from typing import TYPE_CHECKING, Any

from lofarexec.errors import ConfigError

__all__ = ["ConfigParserCalls", "MissingOptionError", "MissingSectionError"]

_MISSING: Any = object()


def _init(error: ConfigError, message: str, filename: str | None, section: str,
          key: str) -> None:
    """Fill ``error`` as a ConfigError would be filled (same one-line text and attributes)."""
    text = str(ConfigError(message, filename=filename, section=section, key=key))
    Exception.__init__(error, text)
    error.filename, error.section, error.key = filename, section, key
    error.message = text  # type: ignore[attr-defined]  # configparser.Error's attribute


class MissingOptionError(ConfigError, configparser.NoOptionError):
    """An absent key: a ConfigError, and configparser's ``NoOptionError`` for older recipes."""

    def __init__(self, message: str, *, filename: str | None, section: str, key: str) -> None:
        _init(self, message, filename, section, key)
        self.option = key


class MissingSectionError(ConfigError, configparser.NoSectionError):
    """An absent section: a ConfigError, and configparser's ``NoSectionError``."""

    def __init__(self, message: str, *, filename: str | None, section: str, key: str) -> None:
        _init(self, message, filename, section, key)


class ConfigParserCalls:
    """``has_option``, ``getboolean``, ``getint``, ``getfloat``, ``options``, ``items`` and
    ``defaults`` with configparser's meaning (a section sees ``[DEFAULT]``'s keys), on top of
    the typed accessors of :class:`~lofarexec.config.PipelineConfig`."""

    _parser: configparser.ConfigParser
    path: Any
    if TYPE_CHECKING:  # PipelineConfig's typed accessors
        def get(self, section: str, key: str, fallback: Any = ..., *,
                raw: bool = False) -> Any: ...
        def get_bool(self, section: str, key: str, fallback: Any = ...) -> Any: ...
        def get_int(self, section: str, key: str, fallback: Any = ...) -> Any: ...
        def get_float(self, section: str, key: str, fallback: Any = ...) -> Any: ...

    def has_option(self, section: str, key: str) -> bool:
        """Whether ``key`` is set in ``[section]`` or ``[DEFAULT]`` (False for no section)."""
        return self._parser.has_option(section, key)

    def getboolean(self, section: str, key: str, *, fallback: Any = _MISSING, **_: Any) -> Any:
        """``key`` as a flag (``get_bool``), with configparser's keyword ``fallback``."""
        return self.get_bool(section, key, *self._given(fallback))

    def getint(self, section: str, key: str, *, fallback: Any = _MISSING, **_: Any) -> Any:
        """``key`` as a whole number (``get_int``)."""
        return self.get_int(section, key, *self._given(fallback))

    def getfloat(self, section: str, key: str, *, fallback: Any = _MISSING, **_: Any) -> Any:
        """``key`` as a number (``get_float``)."""
        return self.get_float(section, key, *self._given(fallback))

    def options(self, section: str) -> list[str]:
        """The keys ``[section]`` sees, ``[DEFAULT]``'s included."""
        if section != self._parser.default_section and not self._parser.has_section(section):
            raise MissingSectionError("the section is missing; add it", filename=str(self.path),
                                      section=section, key="")
        return list(self._parser[section])

    def items(self, section: str, raw: bool = False) -> list[tuple[str, str]]:
        """``(key, value)`` for every key ``[section]`` sees, interpolated unless ``raw``."""
        return [(key, self.get(section, key, raw=raw)) for key in self.options(section)]

    def defaults(self) -> dict[str, str]:
        """``[DEFAULT]``'s keys and their raw values, as configparser's ``defaults()``."""
        return dict(self._parser.defaults())

    @staticmethod
    def _given(fallback: Any) -> tuple[Any, ...]:
        return () if fallback is _MISSING else (fallback,)

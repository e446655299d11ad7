"""The field types of recipe ingredients: what each accepts and how it converts text.

A value from the command line or ``pipeline.cfg`` is text; :meth:`Field.coerce` converts it
(``IntField`` makes ``"3"`` an int) and :meth:`Field.is_valid` says whether the result will do.
See :mod:`lofarexec.ingredients` for how recipes declare and use them.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping
from typing import Any

from lofarexec.errors import LofarexecError


class IngredientError(LofarexecError, TypeError):
    """A recipe input or output is missing, undeclared, or has a value its field refuses."""


# -- fields -------------------------------------------------------------------------------------
class Field:
    """One typed ingredient: ``Field("-x", "--long", help=..., default=... | optional=True)``.

    A field has a ``default`` attribute only when one is given, and ``optional`` only when
    ``optional=True`` is given without a default (as the original framework's fields do).
    """

    #: What a valid value is, for error messages ("an integer").
    kind = "a value"

    def __init__(self, *optionstrings: str, **attrs: Any) -> None:
        self.optionstrings = optionstrings
        self.help: str = attrs.get("help", "")
        if "default" in attrs:
            self.default = attrs["default"]
        elif attrs.get("optional"):
            self.optional = True

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` (already coerced) is acceptable; subclasses say what is."""
        return True

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this field's type where possible (a command-line string)."""
        return value

    def option_help(self) -> str:
        """The ``--help`` text: the field's help with its default, or that it is optional."""
        if hasattr(self, "default"):
            return f"{self.help} [Default: {self.default}]".strip()
        if hasattr(self, "optional"):
            return f"{self.help} [Optional]".strip()
        return self.help


class StringField(Field):
    """Any string."""

    kind = "a string"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, str)


class _NumberField(Field):
    """A number of type :attr:`number_type`; text is converted with that type."""

    number_type: type = int

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, self.number_type) and not isinstance(value, bool)

    def coerce(self, value: Any) -> Any:
        try:
            return self.number_type(value)
        except (TypeError, ValueError):
            return value


class IntField(_NumberField):
    """An integer; a string such as ``"3"`` is converted."""

    kind = "an integer"
    number_type = int


class FloatField(_NumberField):
    """A floating-point number; a string such as ``"0.5"`` is converted."""

    kind = "a number"
    number_type = float


class FileField(Field):
    """The name of a path that exists."""

    kind = "an existing file"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, (str, os.PathLike)) and os.path.exists(value)


class ExecField(Field):
    """The name of an executable file."""

    kind = "an executable file"

    def is_valid(self, value: Any) -> bool:
        return (isinstance(value, (str, os.PathLike)) and os.path.isfile(value)
                and os.access(value, os.X_OK))


class DirectoryField(Field):
    """A directory; converting a name creates the directory when it can."""

    kind = "a directory"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, (str, os.PathLike)) and os.path.isdir(value)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            try:
                os.makedirs(value, exist_ok=True)
            except OSError:
                pass  # is_valid then refuses it, naming the input
        return value


class BoolField(Field):
    """True or False; the strings True/False/yes/no/on/off/1/0 (any case), None and "" convert."""

    kind = "True or False"
    _WORDS = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False, "none": False, "": False}

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, bool)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._WORDS.get(value.strip().lower(), value)
        return value


class ListField(Field):
    """A list or tuple; a string ``"[a, b]"`` or ``"a,b"`` becomes ``["a", "b"]``."""

    kind = "a list"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))

    def coerce(self, value: Any) -> Any:
        return string_to_list(value) if isinstance(value, str) else value


class DictField(Field):
    """A dict; a string holding a Python dict literal (``"{'a': 1}"``) is converted."""

    kind = "a dict"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, dict)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                return value
            return parsed if isinstance(parsed, dict) else value
        return value


class FileList(ListField):
    """A list of names of paths that all exist."""

    kind = "a list of existing files"

    def is_valid(self, value: Any) -> bool:
        return super().is_valid(value) and all(
            isinstance(name, (str, os.PathLike)) and os.path.exists(name) for name in value)


def string_to_list(text: str) -> list[str]:
    """``"[a, 'b']"`` or ``"a,b"`` as ``["a", "b"]``; empty items are dropped."""
    items = (item.strip().strip("'\"").strip() for item in text.strip().strip("[]").split(","))
    return [item for item in items if item]


def checked(key: str, field: Field, value: Any) -> Any:
    converted = field.coerce(value)
    if not field.is_valid(converted):
        raise IngredientError(f"{value!r} is not a valid value for '{key}' "
                              f"({type(field).__name__}: {field.kind} is needed)")
    return converted

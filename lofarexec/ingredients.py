"""Typed recipe inputs and outputs ("ingredients"), declared as the LOFAR framework's recipes do.

A recipe class declares its inputs and outputs as fields::

    class copier(BaseRecipe):
        inputs = {"mapfile": StringField("--mapfile", help="mapfile to write"),
                  "allow_move": BoolField("--allow-move", default=True)}
        outputs = {"mapfile_copied": StringField()}

Each input becomes a command-line option of the recipe (its type converts and checks the value;
``--help`` shows the default). An input the command line does not give is taken from the
section of ``pipeline.cfg`` named after the recipe's file (``[copier]``), else from its
default; one with neither and not ``optional=True`` stops the recipe before any job runs. Inputs
are inherited from base classes, outputs are not. When ``go()`` succeeds, outputs declared
without a default and never set are named in a warning.

``self.inputs`` and ``self.outputs`` are then :class:`LOFARingredient` mappings: a value set on
them is converted and checked (:class:`IngredientError`, also a ``TypeError`` as in the original
framework); an unset field with a default reads as that default. A recipe that declares no
ingredients keeps plain dicts, exactly as the seed's recipes have them. The field types live
in :mod:`lofarexec.ingredient_fields`.
"""

from __future__ import annotations

import argparse
import copy
import inspect
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

from lofarexec.errors import ConfigError
from lofarexec.ingredient_fields import (
    BoolField,
    DictField,
    DirectoryField,
    ExecField,
    Field,
    FileField,
    FileList,
    FloatField,
    IngredientError,
    IntField,
    ListField,
    StringField,
    checked,
    string_to_list,
)


class _Config(Protocol):
    """What the ingredients read of a :class:`~lofarexec.config.PipelineConfig`."""

    path: Path

    @property
    def runtime_directory(self) -> Path: ...
    @property
    def working_directory(self) -> Path: ...
    def has_section(self, name: str) -> bool: ...
    def section_keys(self, section: str) -> list[str]: ...
    def get(self, section: str, key: str, fallback: Any = ..., *, raw: bool = False) -> Any: ...


# -- the mapping --------------------------------------------------------------------------------
class LOFARingredient(MutableMapping[str, Any]):
    """A recipe's inputs or outputs: the values set, plus the defaults of the fields not set.

    Setting a field's value converts and checks it; setting a name no field declares is an
    error. :meth:`update` stores as given (the framework's own options, parsed already). A
    default is copied on first read, so a recipe that appends to a default list changes its own
    copy only, and keeps the change.
    """

    def __init__(self, fields: Mapping[str, Field] | None) -> None:
        self._fields: dict[str, Field] = dict(fields or {})
        self._values: dict[str, Any] = {}
        self._defaults: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        if key not in self._defaults:
            field = self._fields.get(key)
            if field is None or not hasattr(field, "default"):
                raise KeyError(key)
            self._defaults[key] = checked(key, field, copy.deepcopy(field.default))
        return self._defaults[key]

    def __setitem__(self, key: str, value: Any) -> None:
        field = self._fields.get(key)
        if field is None:
            raise IngredientError(f"'{key}' is not a declared ingredient; declared: "
                                  f"{', '.join(sorted(self._fields)) or 'none'}")
        self._values[key] = checked(key, field, value)
        self._defaults.pop(key, None)

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._defaults.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        defaulted = (key for key, field in self._fields.items()
                     if hasattr(field, "default") and key not in self._values)
        yield from [*self._values, *defaulted]

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"LOFARingredient({dict(self._values)!r}, fields={sorted(self._fields)!r})"

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Store values as given, unconverted (the original framework's behaviour)."""
        self._values.update(other, **kwargs)

    @property
    def fields(self) -> Mapping[str, Field]:
        """The declared fields, by name."""
        return self._fields

    def is_set(self, key: str) -> bool:
        """Whether ``key`` was given a value (a default does not count)."""
        return key in self._values

    def missing(self) -> list[str]:
        """The fields with no value, no default, and not optional."""
        return [key for key, field in self._fields.items() if key not in self._values
                and not hasattr(field, "default") and not hasattr(field, "optional")]

    def complete(self) -> bool:
        """Whether every required field has a value."""
        return not self.missing()


class LOFARinput(dict[str, Any]):
    """Inputs handed from one recipe to another: the framework's own inputs of ``defaults``."""

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        for key in RecipeIngredients.inputs:
            if key != "args" and defaults is not None and key in defaults:
                self[key] = defaults[key]


class LOFARoutput(dict[str, Any]):
    """Outputs collected from a recipe another recipe ran."""


# -- recipes ------------------------------------------------------------------------------------
class RecipeIngredientsMeta(type):
    """Merges a recipe class's ``inputs`` with its bases' (outputs are not inherited) and lets
    ``pipeline.cfg`` hold a section named after the recipe's file."""

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        cls._infields = {**getattr(cls, "_infields", {}), **namespace.get("inputs", {})}
        cls._outfields = dict(namespace.get("outputs", {}))
        declares = bool(bases) and ("inputs" in namespace or "outputs" in namespace)
        cls._has_ingredients = declares or any(
            getattr(base, "_has_ingredients", False) for base in bases)
        if declares:  # RecipeIngredients' own framework inputs alone change nothing
            section = _recipe_section(cls)
            sections = getattr(cls, "config_sections", ())
            if section and section not in sections:
                cls.config_sections = (*sections, section)


def _recipe_section(cls: type) -> str | None:
    """The recipe's own ``pipeline.cfg`` section: its file's name without ``.py``."""
    try:
        return Path(inspect.getfile(cls)).stem
    except (TypeError, OSError):  # a class made in an interactive session has no file
        return None


#: The framework's own inputs, which its command line and config already provide.
_FRAMEWORK_INPUTS = ("job_name", "config", "runtime_directory", "working_directory",
                     "start_time", "dry_run", "args")


class RecipeIngredients(metaclass=RecipeIngredientsMeta):
    """Base of every recipe: the framework's inputs and the machinery that honours the fields."""

    inputs: MutableMapping[str, Any] = {
        "job_name": StringField("-j", "--job-name", help="Job name"),
        "config": FileField("-c", "--config", optional=True, help="Configuration file"),
        "task_files": FileList("-t", "--task-file", optional=True,
                               help="Task definition file"),
        "runtime_directory": StringField("-r", "--runtime-directory",
                                         help="Runtime directory on the head node"),
        "working_directory": StringField("-w", "--working-directory",
                                         help="Working directory on the compute nodes"),
        "start_time": StringField("--start-time", help="[Expert use] Pipeline start time"),
        "dry_run": BoolField("-n", "--dry-run", default=False, help="Dry run"),
        "args": ListField("--args", default=[], help="Args"),
    }
    outputs: MutableMapping[str, Any] = {}
    config_sections: tuple[str, ...] = ()
    _infields: dict[str, Field]
    _outfields: dict[str, Field]
    _has_ingredients: bool

    def _new_ingredients(
        self, framework_outputs: Iterable[str] = ()
    ) -> tuple[MutableMapping[str, Any], MutableMapping[str, Any]]:
        """Fresh ``(inputs, outputs)``: plain dicts for a recipe declaring no ingredients."""
        if not self._has_ingredients:
            return {}, {}
        outfields = {**{name: Field(optional=True) for name in framework_outputs},
                     **self._outfields}
        return LOFARingredient(self._infields), LOFARingredient(outfields)

    def _add_input_options(self, parser: argparse.ArgumentParser) -> None:
        """Add an option to ``parser`` for each declared input the framework does not provide."""
        if not isinstance(self.inputs, LOFARingredient):
            return
        if self._outfields:
            parser.epilog = f"outputs: {', '.join(sorted(self._outfields))}"
        for name, field in self.inputs.fields.items():
            if name in _FRAMEWORK_INPUTS:
                continue
            flags = field.optionstrings or ("--" + name.replace("_", "-"),)
            extra: dict[str, Any] = {"nargs": "?", "const": True} if isinstance(
                field, BoolField) else {}
            try:
                parser.add_argument(*flags, dest=name, default=None, help=field.option_help(),
                                    type=_option_type(name, field), **extra)
            except argparse.ArgumentError as exc:  # -r/--rerun: -r is the framework's
                parser.error(f"input '{name}' of {type(self).__name__}: {exc}; give it other "
                             "option strings")

    def _inputs_from_config(self, config: _Config) -> None:
        """Fill inputs the command line left out from ``[<recipe file name>]``; then stop with
        one line if a required input is still missing. Called by ``go()`` once config is read."""
        inputs = self.inputs
        if not isinstance(inputs, LOFARingredient):
            return
        section = _recipe_section(type(self))
        if section and config.has_section(section):
            for key in config.section_keys(section):
                name = key.replace("-", "_")
                if name not in inputs.fields:
                    raise ConfigError(f"{type(self).__name__} has no input '{name}'; its inputs "
                                      f"are {', '.join(sorted(inputs.fields))}",
                                      filename=str(config.path), section=section, key=key)
                if inputs.is_set(name):
                    continue  # the command line wins
                try:
                    inputs[name] = config.get(section, key)
                except IngredientError as exc:
                    raise ConfigError(str(exc), filename=str(config.path), section=section,
                                      key=key) from None
        if not inputs.is_set("runtime_directory"):  # recipes read these two from inputs
            inputs["runtime_directory"] = str(config.runtime_directory)
        if not inputs.is_set("working_directory"):
            inputs["working_directory"] = str(config.working_directory)
        missing = inputs.missing()
        if missing:
            options = ", ".join(_flag(name, inputs.fields[name]) for name in missing)
            where = f" or as '{missing[0]} = ...' under [{section}] in {config.path}" * bool(
                section)
            raise IngredientError(f"{type(self).__name__}: required input(s) missing: {options}; "
                                  f"give it on the command line{where}")

    def _check_outputs(self) -> list[str]:
        """Warn, when ``go()`` succeeded, of declared outputs it never set; return their names."""
        outputs = self.outputs
        if not isinstance(outputs, LOFARingredient):
            return []
        missing = outputs.missing()
        if missing:
            logger = getattr(self, "logger", None)
            if logger is not None:
                logger.warning("recipe %s did not set its output(s) %s", type(self).__name__,
                               ", ".join(missing))
        return missing


def _flag(name: str, field: Field) -> str:
    long_flags = [flag for flag in field.optionstrings if flag.startswith("--")]
    return (long_flags or list(field.optionstrings) or ["--" + name.replace("_", "-")])[0]


def _option_type(name: str, field: Field) -> Any:
    """argparse's ``type=`` for ``field``: converts, and refuses a bad value naming the input."""

    def convert(text: str) -> Any:
        try:
            return checked(name, field, text)
        except IngredientError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = type(field).__name__  # argparse names the type in some messages
    return convert


class RecipeArgumentParser(argparse.ArgumentParser):
    """A recipe's option parser whose mistakes (unknown option, bad value) are one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


__all__ = [
    "BoolField", "DictField", "DirectoryField", "ExecField", "Field", "FileField", "FileList",
    "FloatField", "IngredientError", "IntField", "LOFARingredient", "LOFARinput", "LOFARoutput",
    "ListField", "RecipeArgumentParser", "RecipeIngredients", "RecipeIngredientsMeta",
    "StringField", "string_to_list",
]

"""Finding ``pipeline.cfg`` and reading it into a parser, with parse errors as one line.

Search order (:func:`find_config`): ``-c FILE``, ``pipeline.cfg`` in the recipe's folder, then in
the working directory, then ``~/.pipeline.cfg``. :func:`read_config` turns every problem of
reading and parsing (unreadable file, not UTF-8, syntax error, duplicate key or section) into a
one-line :class:`ConfigError` naming the file and line; configparser's exceptions never escape.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from lofarexec.errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_SECTION",
    "HOME_CONFIG_FILENAME",
    "StrPath",
    "find_config",
    "read_config",
]

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


def find_config(
    explicit: StrPath | None,
    *,
    recipe_directory: StrPath | None,
    working_directory: StrPath | None,
    home: StrPath | None = None,
) -> Path:
    """Return the ``pipeline.cfg`` a run should use; called once, before ``load_config``.

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


def read_config(path: Path) -> tuple[configparser.ConfigParser, dict[str, list[str]]]:
    """Read and parse ``path``: the interpolating parser, and the keys each section sets itself.

    Called by ``load_config``; raises :class:`ConfigError` naming the file (and line) when the
    file cannot be read or parsed.
    """
    return _parse(_read_text(path), str(path))


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

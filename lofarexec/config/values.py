"""Text of a ``pipeline.cfg`` value to a typed value: the one parser per type.

Used by :class:`~lofarexec.config.PipelineConfig`'s accessors and by the backend settings
converters alike, so ``4`` or ``yes`` means the same in every section. Each parser raises
``ValueError`` whose text completes "value 'x' ...": what is wrong and what to write instead;
the caller adds file, section and key.
"""

from __future__ import annotations

import configparser
import math
import re
from pathlib import Path

__all__ = [
    "parse_bool",
    "parse_exit_codes",
    "parse_float",
    "parse_halt",
    "parse_int",
    "parse_list",
    "parse_path",
    "parse_positive_float",
    "split_search_path",
]

_LIST_SEPARATOR = re.compile(r"[,\n]")
_BOOLEAN_STATES = configparser.ConfigParser.BOOLEAN_STATES
# "yes/no, true/false, on/off or 1/0", from the same table the parser uses
_BOOLEAN_PAIRS = sorted(
    (f"{yes}/{no}" for yes, no in zip(
        [word for word, state in _BOOLEAN_STATES.items() if state],
        [word for word, state in _BOOLEAN_STATES.items() if not state],
    )),
    key=lambda pair: pair[0].isdigit(),
)
_BOOLEAN_HINT = f"{', '.join(_BOOLEAN_PAIRS[:-1])} or {_BOOLEAN_PAIRS[-1]}"


def parse_int(text: str, minimum: int | None = None) -> int:
    """A whole number, at least ``minimum`` if given (``int()``, as ``getint`` does)."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError("is not a whole number; write one such as 4") from None
    _check_minimum(number, minimum)
    return number


def parse_float(text: str, minimum: float | None = None) -> float:
    """A finite number, at least ``minimum`` if given (``float()``, as ``getfloat`` does)."""
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


def parse_positive_float(text: str) -> float:
    """A number of seconds above 0 (a time limit)."""
    number = parse_float(text)
    if number <= 0:
        raise ValueError("is not positive; write a number of seconds above 0, or remove the line")
    return number


def parse_bool(text: str) -> bool:
    """A flag, in configparser's own words (``BOOLEAN_STATES``: yes/no, true/false, on/off, 1/0)."""
    try:
        return _BOOLEAN_STATES[text.strip().lower()]
    except KeyError:
        raise ValueError(f"is not a yes/no value; write {_BOOLEAN_HINT}") from None


def parse_list(text: str) -> list[str]:
    """``[a, b, c]`` (the original's syntax) or ``a, b, c``; never eval'd.

    Items are split at commas or newlines and stripped, quotes around an item are removed and
    empty items dropped, so an empty value or ``[]`` is an empty list.
    """
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


def parse_path(text: str) -> Path:
    """A path, ``~`` expanded; a relative path is left relative; empty is an error."""
    if not text.strip():
        raise ValueError("is empty; write a path, or remove the line")
    try:
        return Path(text.strip()).expanduser()
    except RuntimeError:  # '~name' of a user this machine does not know
        raise ValueError("starts with '~' of an unknown user; write the path in full") from None


def split_search_path(text: str) -> list[str]:
    """Colon-separated folders, like ``PYTHONPATH``; empty parts are dropped."""
    return [part.strip() for part in text.split(":") if part.strip()]


_HALT_MODES = ("soon", "now")
_HALT_HINT = ("write never, soon,fail=N or now,fail=N (N a count such as 3 or a percentage "
              "such as 5%)")


def parse_halt(text: str) -> tuple[str, int | None, float | None]:
    """``never``, ``soon,fail=N`` or ``now,fail=N`` (N a count, or a percentage ``5%``), as GNU
    parallel's ``--halt``: (mode, count, percent)."""
    words = [word.strip().lower() for word in text.split(",")]
    if words == ["never"]:
        return "never", None, None
    if len(words) != 2 or words[0] not in _HALT_MODES or not words[1].startswith("fail="):
        raise ValueError(f"is not a halt policy; {_HALT_HINT}")
    limit = words[1][len("fail="):].strip()
    try:
        if limit.endswith("%"):
            percent = float(limit[:-1])
            if not (math.isfinite(percent) and 0 < percent <= 100):
                raise ValueError
            return words[0], None, percent
        count = int(limit)
        if count < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"has the limit {limit!r}, neither a count of at least 1 nor a "
                         f"percentage above 0; {_HALT_HINT}") from None
    return words[0], count, None


def parse_exit_codes(text: str) -> frozenset[int]:
    """A list of exit statuses (``75, 111``) from 1 to 255."""
    codes = set()
    for item in parse_list(text):
        try:
            code = int(item)
        except ValueError:
            raise ValueError(f"has {item!r}, not an exit status; write numbers such as "
                             "75, 111") from None
        if not 1 <= code <= 255:
            raise ValueError(f"has {code}, not an exit status of a failure; write numbers "
                             "from 1 to 255")
        codes.add(code)
    return frozenset(codes)

"""The one check of a class a plugin registers as a backend, made for every plugin of a run.

Kept apart from :mod:`lofarexec.plugin.metadata` (what ``lofarexec backends -v`` prints), so
that a run checks its backends without building the descriptions it never shows.
"""

from __future__ import annotations

from lofarexec.backend import Backend
from lofarexec.config.settings import _settings_fields  # the reader's own type check

__all__ = ["check_backend_class"]


def check_backend_class(backend_class: object) -> str | None:
    """What is wrong with a class a plugin registered, in words; None when it is usable."""
    if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
        return f"{backend_class!r} is not a subclass of lofarexec.Backend"
    try:
        _settings_fields(backend_class.Settings)
    except TypeError as exc:
        return f"backend '{backend_class.name}': {exc}"
    return None

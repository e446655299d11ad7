"""Checks the section and key names of ``pipeline.cfg`` against the installed backends, loading
as few of them as it can.

A recipe checks its configuration before any job runs (see :mod:`lofarexec.config.known`): a
backend's name is a section, and its settings may read keys of other sections
(``config_fallbacks``). Loading every backend to learn that would import paramiko for a run
with ``method = local``, so the check is made first with the backends loaded so far (the
configured one among them) plus the names of those not loaded yet; only a configuration that
fails it is checked again with all of them, so an error is raised exactly when checking
against every backend raises it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lofarexec.config import PipelineConfig
from lofarexec.config.known import check_names
from lofarexec.errors import ConfigError, PluginError
from lofarexec.plugin.manager import PluginManager, build_plugin_manager

__all__ = ["check_config_names"]


def check_config_names(config: PipelineConfig, recipe_sections: Sequence[str], *,
                       method: str | None = None, manager: PluginManager | None = None) -> None:
    """Raise :class:`~lofarexec.errors.ConfigError` for the first unknown section or key of
    ``config``; ``method`` is the backend the run will use (loaded here, as the run would)."""
    manager = manager or build_plugin_manager()
    backends = manager.backends
    if method:
        try:
            backends.get(method)
        except PluginError:
            pass  # the run says so, once its configuration is known to be well spelt
    try:
        _check(config, recipe_sections, manager, backends.loaded_names(),
               [*backends.loaded_names(), *manager.deferred_names()])
    except ConfigError:
        every = backends.names()  # loads the others: one of them may know the name
        _check(config, recipe_sections, manager, every, every)


def _check(config: PipelineConfig, recipe_sections: Sequence[str], manager: PluginManager,
           loaded: Iterable[str], sections: Iterable[str]) -> None:
    fallback_keys: dict[str, set[str]] = {}
    for name in loaded:
        fallbacks = getattr(manager.backends.get(name).Settings, "config_fallbacks", {})
        for section, key in fallbacks.values():
            fallback_keys.setdefault(section, set()).add(key)
    check_names(config, backend_sections=sections, recipe_sections=recipe_sections,
                fallback_keys=fallback_keys)

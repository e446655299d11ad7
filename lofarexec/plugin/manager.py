"""Finds the installed plugins and asks them for their backends.

Built in a function, never at import time, so tests and embedding programs get a fresh manager
and a broken third-party plugin only matters when a run needs plugins. Installed plugins are
loaded by pluggy's own :meth:`~pluggy.PluginManager.load_setuptools_entrypoints` from the
``lofarexec`` entry-point group; the distribution each came from
(:meth:`~pluggy.PluginManager.list_plugin_distinfo`) is what ``lofarexec backends`` prints and
what errors name.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

import pluggy

from lofarexec.backend import BackendRegistry
from lofarexec.errors import PluginError
from lofarexec.plugin import spec

__all__ = ["ENTRY_POINT_GROUP", "PluginManager", "build_plugin_manager"]

ENTRY_POINT_GROUP = "lofarexec"
_OWN_PROVIDER = "lofarexec"  # plugins handed to build_plugin_manager, not installed ones


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with lofarexec's hooks, plus the backends the plugins registered."""

    def __init__(self) -> None:
        super().__init__(spec.PROJECT_NAME)
        self.add_hookspecs(spec)
        self.backends = BackendRegistry()

    def load_installed_plugins(self) -> None:
        """Load every plugin of the ``lofarexec`` entry-point group, through pluggy.

        pluggy loads the first entry point of each name in ``sys.path`` order and skips later
        ones of that name (a distribution found twice on the path counts once). An entry point
        that fails to import or register stops the loading with a :class:`PluginError` naming
        it and its distribution.
        """
        try:
            self.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise self._load_error(exc) from exc

    def register_plugin(self, plugin: object, *, name: str) -> None:
        """Register a plugin object that is not installed (the runner's reporters, a test's)."""
        try:
            self.register(plugin, name=name)
        except ValueError as exc:  # pluggy: already registered / name taken
            message = f"plugin '{name}' from {_OWN_PROVIDER} cannot be registered: {exc}"
            raise PluginError(message) from exc

    def provider(self, plugin: object) -> str:
        """``"<distribution> <version>"`` of an installed plugin; ``lofarexec`` for the others."""
        for loaded, dist in self.list_plugin_distinfo():
            if loaded is plugin:
                return _label(dist.project_name, dist.version)
        return _OWN_PROVIDER

    def collect_backends(self) -> BackendRegistry:
        """Call every plugin's ``lofarexec_register_backends`` once, recording each provider."""
        registry = self.backends
        for impl in self.hook.lofarexec_register_backends.get_hookimpls():
            registry.current_provider = self.provider(impl.plugin)
            try:
                impl.function(registry=registry)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin '{impl.plugin_name}' ({registry.current_provider}) failed to "
                    f"register its backends: {exc}"
                ) from exc
        registry.current_provider = "unknown"
        return registry

    def _load_error(self, exc: Exception) -> PluginError:
        """The error for an entry point pluggy failed to load.

        pluggy raises the plugin's own exception and does not say which entry point raised it.
        It records each entry point's plugin and distribution before it loads the next, so the
        one that failed is the first of the group, in pluggy's order, with no record (a name
        loaded before is skipped by pluggy, and so here).
        """
        what = f"({type(exc).__name__}: {' '.join(str(exc).split())})"
        loaded = {self.get_name(plugin) for plugin, _ in self.list_plugin_distinfo()}
        for dist in importlib.metadata.distributions():
            for entry_point in dist.entry_points:
                if (entry_point.group == ENTRY_POINT_GROUP
                        and entry_point.name not in loaded
                        and not self.is_blocked(entry_point.name)):
                    provider = _label(dist.metadata["Name"], dist.version)
                    return PluginError(
                        f"plugin '{entry_point.name}' = {entry_point.value} from {provider} "
                        f"failed to load {what}; reinstall or uninstall {provider}"
                    )
        return PluginError(f"a plugin of the '{ENTRY_POINT_GROUP}' entry-point group failed to "
                           f"load {what}; reinstall or uninstall it")


def build_plugin_manager(extra_plugins: Iterable[object] = ()) -> PluginManager:
    """A manager with every installed plugin loaded and every backend registered.

    ``extra_plugins`` are registered as well (the runner's own reporters, a test's plugin).
    """
    manager = PluginManager()
    manager.load_installed_plugins()
    for plugin in extra_plugins:
        manager.register_plugin(plugin, name=f"{type(plugin).__name__}-{id(plugin)}")
    manager.collect_backends()
    return manager


def _label(name: str, version: str) -> str:
    return f"{name} {version}"

"""Finds the installed plugins and asks them for their backends.

Built in a function, never at import time, so tests and embedding programs get a fresh manager
and a broken third-party plugin only matters when a run needs plugins.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

import pluggy

from lofarexec.backend import BackendRegistry
from lofarexec.errors import PluginError
from lofarexec.plugin import spec

ENTRY_POINT_GROUP = "lofarexec"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with lofarexec's hooks, plus the backends the plugins registered."""

    def __init__(self) -> None:
        super().__init__(spec.PROJECT_NAME)
        self.add_hookspecs(spec)
        self.backends = BackendRegistry()
        self._providers: dict[int, str] = {}

    def register_plugin(self, plugin: object, *, name: str, provider: str) -> None:
        """Register one plugin object and remember which distribution it came from."""
        try:
            self.register(plugin, name=name)
        except ValueError as exc:  # pluggy: already registered / name taken
            raise PluginError(f"plugin '{name}' from {provider} cannot be registered: {exc}")
        self._providers[id(plugin)] = provider

    def collect_backends(self) -> BackendRegistry:
        """Call every plugin's ``lofarexec_register_backends`` once, recording each provider."""
        registry = self.backends
        for impl in self.hook.lofarexec_register_backends.get_hookimpls():
            registry.current_provider = self._providers.get(id(impl.plugin), impl.plugin_name)
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


def build_plugin_manager(extra_plugins: Iterable[object] = ()) -> PluginManager:
    """A manager with every installed plugin loaded and every backend registered.

    ``extra_plugins`` are registered as well (the runner's own reporters, a test's plugin).
    """
    manager = PluginManager()
    for entry_point in _unique_entry_points():
        provider = _distribution_label(entry_point)
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginError(
                f"plugin '{entry_point.name}' = {entry_point.value} from {provider} failed to "
                f"import ({type(exc).__name__}: {exc}); reinstall or uninstall {provider}"
            ) from exc
        manager.register_plugin(plugin, name=entry_point.name, provider=provider)
    for plugin in extra_plugins:
        manager.register_plugin(
            plugin, name=f"{type(plugin).__name__}-{id(plugin)}", provider="lofarexec"
        )
    manager.collect_backends()
    return manager


def _unique_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, once each even if a distribution is on the path twice."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (entry_point.name, entry_point.value)
        if key not in seen:
            seen.add(key)
            unique.append(entry_point)
    return sorted(unique, key=lambda ep: ep.name)


def _distribution_label(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"

"""Finds the installed plugins and asks them for their backends.

Built in a function, never at import time, so tests and embedding programs get a fresh manager.
Installed plugins are the ``lofarexec`` entry-point group (found by :mod:`.entrypoints`,
without importing ``importlib.metadata``), loaded one by one in ``sys.path`` order as pluggy's
own ``load_setuptools_entrypoints`` would (the first entry point of a name wins; a
distribution found twice on the path counts once), but a broken one does not stop the
others: a plugin that fails to import or register, whose hook raises, that registers something
that is no usable backend, or that claims a name another package has, is left out and described
in one line naming its package (:attr:`PluginManager.broken`). ``lofarexec backends`` prints
those lines, a run logs them as warnings, and a run that asks for a backend that is missing
because of them says why.

lofarexec's own entry points (its built-in backends: each registers exactly the backend of
its entry point's name and implements no other hook) are loaded only when that backend is
asked for by name, or when the whole list is (``names()``, ``lofarexec backends``): a run with
``method = local`` never imports paramiko. Other packages' plugins are loaded at once, as any
of them may follow runs and jobs through the lifecycle hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import pluggy

from lofarexec.backend import Backend, BackendRegistry
from lofarexec.errors import PluginError
from lofarexec.plugin import spec
from lofarexec.plugin.backendcheck import check_backend_class
from lofarexec.plugin.entrypoints import EntryPoint, installed_entry_points

__all__ = ["ENTRY_POINT_GROUP", "PluginManager", "build_plugin_manager"]

ENTRY_POINT_GROUP = "lofarexec"
_OWN_PROVIDER = "lofarexec"  # plugins handed to build_plugin_manager, not installed ones
logger = logging.getLogger("lofarexec.plugin")


class InstalledDistribution:
    """The distribution an installed plugin came from (what pluggy's ``DistFacade`` offers)."""

    def __init__(self, project_name: str, version: str) -> None:
        self.project_name = project_name
        self.version = version


class _LazyRegistry(BackendRegistry):
    """The manager's registry: a backend whose plugin is not loaded yet is loaded when asked
    for (``ensure``), and a "no such backend" error also names the plugins that failed to load."""

    def __init__(self, broken: list[str], ensure: Callable[[str | None], None]) -> None:
        super().__init__()
        self._broken = broken
        self._ensure = ensure

    def loaded_names(self) -> list[str]:
        """The backends registered so far, loading nothing."""
        return super().names()

    def loaded_provider(self, name: str) -> str:
        """:meth:`provider` of a backend registered so far, loading nothing."""
        return super().provider(name)

    def get(self, name: str) -> type[Backend]:
        self._ensure(name)
        try:
            return super().get(name)
        except PluginError as exc:
            if not self._broken:
                raise
            raise PluginError(f"{exc}; broken plugins: {'; '.join(self._broken)}") from None

    def provider(self, name: str) -> str:
        self._ensure(name)
        return super().provider(name)

    def names(self) -> list[str]:
        self._ensure(None)
        return super().names()


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with lofarexec's hooks, plus the backends the plugins registered."""

    def __init__(self) -> None:
        super().__init__(spec.PROJECT_NAME)
        self.add_hookspecs(spec)
        self.broken: list[str] = []
        """One line per plugin left out, naming its package and what to do."""
        self.backends = _LazyRegistry(self.broken, self._ensure_backend)
        self._installed: list[tuple[object, InstalledDistribution]] = []
        self._deferred: dict[str, tuple[EntryPoint, InstalledDistribution]] = {}
        self._warn_broken = False

    def load_installed_plugins(self) -> None:
        """Load every plugin of the ``lofarexec`` entry-point group but lofarexec's own
        (deferred until their backend is asked for); a broken one is left out and described
        in :attr:`broken` (see the module docstring)."""
        first: dict[str, InstalledDistribution] = {}  # entry-point name -> where it came from
        # Only distributions with such entry points have their METADATA read (see .entrypoints)
        for name, version, entry_points in installed_entry_points(ENTRY_POINT_GROUP):
            source = InstalledDistribution(name, version)
            for entry_point in entry_points:
                if self.is_blocked(entry_point.name):
                    continue
                what = f"plugin '{entry_point.name}' = {entry_point.value} from {_label(source)}"
                earlier = first.setdefault(entry_point.name, source)
                if earlier is not source:
                    if earlier.project_name != source.project_name:  # not one dist found twice
                        self._leave_out(f"{what} is not loaded: {_label(earlier)} has a plugin "
                                        f"of that name; uninstall one of them")
                    continue
                if source.project_name == _OWN_PROVIDER:
                    self._deferred[entry_point.name] = (entry_point, source)
                else:
                    self._load_entry_point(entry_point, source)

    def adopt_installed_plugins(self, other: PluginManager) -> None:
        """Take ``other``'s installed plugins as they are (loaded ones registered here too,
        deferred ones still deferred, broken ones still described) instead of looking for them
        again: a run's second manager costs no search and no import (issue 17)."""
        self.broken.extend(other.broken)
        for plugin, source in other._installed:
            self.register(plugin, name=other.get_name(plugin))
            self._installed.append((plugin, source))
        self._deferred.update(other._deferred)
        for name in other.backends.loaded_names():  # as other's check of each left them
            provider = other.backends.loaded_provider(name)
            if provider != _OWN_PROVIDER:  # not from a plugin handed to other alone
                self.backends.current_provider = provider
                self.backends.add(other.backends.get(name))
        self.backends.current_provider = "unknown"

    def _load_entry_point(self, entry_point: EntryPoint,
                          source: InstalledDistribution) -> object | None:
        """Import and register one plugin; None (and a line in :attr:`broken`) if it fails."""
        what = f"plugin '{entry_point.name}' = {entry_point.value} from {_label(source)}"
        try:
            plugin = entry_point.load()
            self.register(plugin, name=entry_point.name)
        except Exception as exc:
            if self.has_plugin(entry_point.name):
                self.unregister(name=entry_point.name)  # pluggy may have half done it
            self._leave_out(f"{what} failed to load ({_why(exc)}); reinstall or "
                            f"uninstall {_label(source)}")
            return None
        self._installed.append((plugin, source))
        return plugin

    def deferred_names(self) -> list[str]:
        """The entry-point names of lofarexec's own plugins not loaded yet (each is the name of
        the one backend it registers)."""
        return sorted(self._deferred)

    def _ensure_backend(self, name: str | None) -> None:
        """Load the deferred plugin named ``name``; all of them when ``name`` is None or is
        no backend registered so far (it may come from any of them)."""
        if not self._deferred:
            return
        if name is not None and name in self._deferred:
            names = [name]
        elif name is None or name not in self.backends.loaded_names():
            names = list(self._deferred)
        else:
            return
        plugins = [self._load_entry_point(*self._deferred.pop(each)) for each in names]
        broken_before = len(self.broken)
        self.collect_backends([plugin for plugin in plugins if plugin is not None])
        if self._warn_broken:
            for line in self.broken[broken_before:]:
                logger.warning("%s", line)

    def list_plugin_distinfo(self) -> list[tuple[object, InstalledDistribution]]:  # type: ignore[override]
        """Each installed plugin with the distribution it came from (all of them loaded)."""
        self._ensure_backend(None)
        return list(self._installed)

    def register_plugin(self, plugin: object, *, name: str) -> None:
        """Register a plugin object that is not installed (the runner's reporters, a test's)."""
        try:
            self.register(plugin, name=name)
        except ValueError as exc:  # pluggy: already registered / name taken
            message = f"plugin '{name}' from {_OWN_PROVIDER} cannot be registered: {exc}"
            raise PluginError(message) from exc

    def provider(self, plugin: object) -> str:
        """``"<distribution> <version>"`` of an installed plugin; ``lofarexec`` for the others."""
        for loaded, dist in self._installed:
            if loaded is plugin:
                return _label(dist)
        return _OWN_PROVIDER

    def collect_backends(self, plugins: Iterable[object] | None = None) -> BackendRegistry:
        """Call every plugin's (or each of ``plugins``') ``lofarexec_register_backends`` once,
        recording each provider.

        Each plugin registers into a registry of its own first, so one that raises, registers
        something unusable or claims a taken name adds none of its backends.
        """
        registry = self.backends
        only = None if plugins is None else list(plugins)
        for impl in self.hook.lofarexec_register_backends.get_hookimpls():
            if only is not None and not any(impl.plugin is plugin for plugin in only):
                continue
            provider = self.provider(impl.plugin)
            what = f"plugin '{impl.plugin_name}' ({provider})"
            staged = BackendRegistry()
            staged.current_provider = provider
            try:
                impl.function(registry=staged)
                problems = [check_backend_class(staged.get(name)) for name in staged.names()]
                problem = next((text for text in problems if text), None)
                if problem:
                    raise PluginError(problem)
            except Exception as exc:
                self._leave_out(f"{what} failed to register its backends ({_why(exc)}); fix "
                                f"or uninstall {provider}")
                continue
            taken = [name for name in staged.names() if name in registry.loaded_names()]
            if taken:
                earlier = registry.loaded_provider(taken[0])
                self._leave_out(f"{what}: backend '{taken[0]}' is provided twice: by "
                                f"{earlier} and by {provider}; uninstall one of them")
                continue
            registry.current_provider = provider
            for name in staged.names():
                registry.add(staged.get(name))
        registry.current_provider = "unknown"
        return registry

    def _leave_out(self, line: str) -> None:
        self.broken.append(line)


def build_plugin_manager(extra_plugins: Iterable[object] = (), *, warn_broken: bool = True,
                         installed: PluginManager | None = None) -> PluginManager:
    """A manager with the installed plugins loaded and their backends registered (lofarexec's
    own backends when first asked for: see the module docstring).

    ``extra_plugins`` are registered as well (the runner's own reporters, a test's plugin).
    Each plugin left out is logged as a warning unless ``warn_broken`` is false (for callers
    that show :attr:`PluginManager.broken` themselves, as ``lofarexec backends`` does).
    With ``installed`` (a manager built earlier in this process, e.g. by the recipe's
    configuration check), its installed plugins are taken over rather than found and loaded
    again, and the plugins it already warned about are not warned about twice.
    """
    manager = PluginManager()
    if installed is None:
        manager.load_installed_plugins()
    else:
        manager.adopt_installed_plugins(installed)
    already_said = len(manager.broken) if installed is not None and installed._warn_broken else 0
    extra_plugins = list(extra_plugins)
    for plugin in extra_plugins:
        manager.register_plugin(plugin, name=f"{type(plugin).__name__}-{id(plugin)}")
    manager.collect_backends(None if installed is None else extra_plugins)
    manager._warn_broken = warn_broken  # also for plugins loaded later, when asked for
    if warn_broken:
        for line in manager.broken[already_said:]:
            logger.warning("%s", line)
    return manager


def _label(dist: InstalledDistribution) -> str:
    return f"{dist.project_name} {dist.version}"


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"

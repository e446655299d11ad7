"""The LOFAR pipeline framework's import paths, kept so that existing recipes run unchanged.

Each module re-exports lofarexec's objects; there is no second implementation here.
A ``lofarpipe/`` folder elsewhere on ``sys.path`` (the later framework's ``lofarpipe/recipes``
tree, which its unit tests import as ``lofarpipe.recipes.master.<name>``) joins this package.
"""

import sys


def _finder(entry: str) -> object:
    """The import system's path finder for ``entry`` (as ``pkgutil.get_importer`` finds it)."""
    if entry in sys.path_importer_cache:
        return sys.path_importer_cache[entry]
    for hook in sys.path_hooks:
        try:
            finder = hook(entry)
        except ImportError:
            continue
        return sys.path_importer_cache.setdefault(entry, finder)
    return None


def _joined_path(path: list[str]) -> list[str]:
    """``path`` and every other ``lofarpipe`` folder on ``sys.path``, in ``sys.path``'s order.

    What ``pkgutil.extend_path`` does (through the import system's own path finders, so zip
    files and custom path hooks count too), without its ``.pkg`` files, and without importing
    ``pkgutil``, which imports ``typing`` and ``importlib.util``: ~3-4 ms at the start of every
    node script in a normal install (issue 17).
    """
    joined = list(path)
    for entry in sys.path:
        finder = _finder(entry) if isinstance(entry, str) else None
        spec = finder.find_spec(__name__) if hasattr(finder, "find_spec") else None
        for portion in getattr(spec, "submodule_search_locations", None) or []:
            if portion not in joined:
                joined.append(portion)
    return joined


__path__ = _joined_path(__path__)

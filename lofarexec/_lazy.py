"""Package names loaded on first use (PEP 562), so that importing a package costs only the
modules a run actually touches (a local run never loads the remote toolkit). Used by
``lofarexec`` and ``lofarexec.transport``; a leaf: it imports nothing of lofarexec."""

from __future__ import annotations

from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms in every node (issue 17)
if TYPE_CHECKING:
    from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name of ``exports`` (name ->
    module) is imported from its module when first asked for, then kept in ``namespace`` (the
    package's globals) so the next use costs nothing."""

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib  # here: a node imports this module, and never a lazy name (issue 17)

        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__

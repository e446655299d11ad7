"""Tools for testing recipes and backends: the in-process mock backend, the ssh test bed, and
the contract suite every transport must pass (importable by third-party plugin packages).

Plugin authors enable :mod:`lofarexec.testing.pytest_plugin` with one line
(``-p lofarexec.testing.pytest_plugin``) for its fixtures; :class:`BackendContract` and
:class:`ContractSetup` are importable from here too (loaded on first use: importing this
package stays cheap).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BackendContract", "ContractSetup"]

_EXPORTS = {"BackendContract": "lofarexec.testing.contract",
            "ContractSetup": "lofarexec.testing.backend_promises"}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lofarexec.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)

"""The drift engine: embed, watch, migrate and audit vectors. No Airflow imports.

Public names are imported lazily so ``import airflow_provider_drift.engine``
stays cheap and works without optional extras.

``embed``, ``watch``, ``erase``, ``migrate`` and ``status`` are functions that
live in submodules of the same names. Python binds a submodule as an attribute
of its package when the submodule is first imported, which would make
``engine.embed`` the function or the module depending on import order. The
package's module class therefore intercepts that binding and keeps the
function: the public name is the function, always. The module itself stays
reachable as ``sys.modules["airflow_provider_drift.engine.embed"]`` and through
``from airflow_provider_drift.engine.embed import ...``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .records import EmbedRun, MigrateRun, WatchRun

__all__ = [
    "DriftAdapter",
    "EmbedRun",
    "Ledger",
    "MigrateRun",
    "WatchRun",
    "embed",
    "erase",
    "migrate",
    "status",
    "watch",
]

#: public name → (submodule, attribute): imported on first use
_LAZY = {
    "embed": (".embed", "embed"),
    "watch": (".watch", "watch"),
    "erase": (".erase", "erase"),
    "migrate": (".migrate", "migrate"),
    "status": (".status", "status"),
    "Ledger": (".ledger", "Ledger"),
    "DriftAdapter": (".adapter", "DriftAdapter"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _EngineModule(types.ModuleType):
    """The package module: a submodule named like a public function binds the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            target = _LAZY.get(name)
            if target is not None and target[0] == f".{name}" and hasattr(value, target[1]):
                value = getattr(value, target[1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _EngineModule

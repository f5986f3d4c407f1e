"""The drift engine: embed, watch, migrate and audit vectors. No Airflow imports.

Public names are imported lazily so ``import airflow_provider_drift.engine``
stays cheap and works without optional extras.
"""

from __future__ import annotations

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
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(name)

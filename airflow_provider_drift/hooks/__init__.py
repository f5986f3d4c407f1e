"""Airflow hooks: turn connections into engine objects (ledger, sink, provider options)."""

from __future__ import annotations

from .embedding import provider_options_from_connection
from .ledger import DriftLedgerHook
from .sink import DriftSinkHook, SinkSpec, sink_from_connection

__all__ = [
    "DriftLedgerHook",
    "DriftSinkHook",
    "SinkSpec",
    "provider_options_from_connection",
    "sink_from_connection",
]

"""Airflow triggers: waits handed to the triggerer so no worker slot is held."""

from __future__ import annotations

from .delta_cdf import DeltaCDFTrigger

__all__ = ["DeltaCDFTrigger"]

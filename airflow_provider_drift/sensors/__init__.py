"""Airflow sensors: wait for work the engine can do."""

from __future__ import annotations

from .delta_cdf import DeltaCDFSensor

__all__ = ["DeltaCDFSensor"]

"""Airflow operators: thin tasks over the drift engine."""

from __future__ import annotations

from .assets import sink_asset, sink_asset_uri
from .embed import EmbedOperator

__all__ = ["EmbedOperator", "sink_asset", "sink_asset_uri"]

"""Airflow triggers: waits handed to the triggerer so no worker slot is held."""

from __future__ import annotations

from .delta_cdf import DeltaCDFTrigger
from .openai_batch import OpenAIBatchTrigger

__all__ = ["DeltaCDFTrigger", "OpenAIBatchTrigger"]

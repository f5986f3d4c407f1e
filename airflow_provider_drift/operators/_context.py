"""Extract what the ledger records about the Airflow run from a task's context."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_provider_drift.engine.errors import ConfigError


def run_context(context: Any) -> dict[str, Any]:
    """Return dag/task/run ids, try number and data interval as JSON-safe values."""
    ti = context["ti"]
    dag = context.get("dag")

    def iso(key: str) -> str | None:
        value = context.get(key)
        return value.isoformat() if isinstance(value, datetime) else None

    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None),
        "task_id": ti.task_id,
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", -1),
        "logical_date": iso("logical_date"),
        "data_interval_start": iso("data_interval_start"),
        "data_interval_end": iso("data_interval_end"),
    }


def data_interval(context: Any) -> tuple[datetime, datetime]:
    """The run's data interval, or ConfigError when the run has none (a manual run without logical date)."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise ConfigError(
            "interval mode needs the run's data interval, and this run has none",
            hint="trigger the run with a logical date (or from the schedule / a backfill), or use the "
            "default watermark mode",
        )
    return start, end

"""Fetch Airflow connections with errors that say how to create them, and read their extras.

Extras arrive typed from the UI and JSON connections but as strings from URI
connections (``?https=true``), so every reader coerces.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_drift.engine.errors import ConfigError

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}


def fetch_connection(conn_id: str, *, example: dict[str, Any]) -> Connection:
    """Return the connection, or raise ConfigError naming it and the two ways to create it."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, example=example) from exc


def missing_connection(conn_id: str, *, example: dict[str, Any]) -> ConfigError:
    as_json = json.dumps(example)
    return ConfigError(
        f"the Airflow connection {conn_id!r} is not defined",
        hint=f"create it, e.g. export AIRFLOW_CONN_{conn_id.upper()}='{as_json}' "
        f"or `airflow connections add {conn_id} --conn-json '{as_json}'` (or in the UI: Admin → Connections)",
        conn_id=conn_id,
    )


def as_bool(value: Any, *, field: str, conn_id: str) -> bool | None:
    """Read a boolean extra that may be a bool, a number, or a string like "true"."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(
        f"connection {conn_id!r}: extra {field!r} must be true or false, got {value!r}",
        hint=f"set {field} to true or false in the connection's extra",
    )


def as_int(value: Any, *, field: str, conn_id: str) -> int | None:
    """Read an integer extra that may arrive as a string."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"connection {conn_id!r}: {field!r} must be an integer, got {value!r}",
            hint=f"set {field} to a number in the connection",
        ) from None

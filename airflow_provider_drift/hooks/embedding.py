"""Resolve an ``openai`` connection into the engine's provider options.

Reads the connection the way the official OpenAI provider does: password =
API key, base URL in ``host`` or ``extra.openai_client_kwargs.base_url``
(the extra wins). Of the other ``openai_client_kwargs``, those the engine's
OpenAI provider takes are passed on; the rest are logged and ignored (the
engine builds its own client, with its own retries).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_drift.engine.errors import ConfigError

from ._connections import fetch_connection

if TYPE_CHECKING:
    from airflow.sdk import Connection

OPENAI_CONN_TYPES = frozenset({"openai"})
#: ``openai_client_kwargs`` the engine's OpenAIProvider accepts under the same name
CLIENT_KWARGS = ("organization", "project", "timeout", "default_headers", "default_query")

log = logging.getLogger(__name__)


def provider_options_from_connection(conn_id: str) -> dict[str, Any]:
    """Look up the ``openai`` connection ``conn_id`` and return ``provider_options`` for ``embed()``."""
    conn = fetch_connection(
        conn_id, example={"conn_type": "openai", "password": "<api key>", "host": "https://api.openai.com/v1"}
    )
    return openai_provider_options(conn)


def openai_provider_options(conn: Connection) -> dict[str, Any]:
    """Return ``api_key``, ``base_url`` and client settings; unset keys are left out.

    Leaving them out keeps the engine's own defaults (and ``OPENAI_API_KEY``) in force.
    """
    conn_id = conn.conn_id
    if (conn.conn_type or "").lower() not in OPENAI_CONN_TYPES:
        raise ConfigError(
            f"connection {conn_id!r} has type {conn.conn_type!r}, not 'openai'",
            hint="point openai_conn_id at an 'openai' connection (password = API key, host = base URL)",
        )
    extra = conn.extra_dejson
    client_kwargs = dict(extra.get("openai_client_kwargs") or {})
    auth_type = extra.get("auth_type", "api_key")
    if auth_type != "api_key":
        raise ConfigError(
            f"connection {conn_id!r} uses auth_type {auth_type!r}; drift supports only API-key auth",
            hint="set the API key as the connection password and remove auth_type from its extra",
        )
    options: dict[str, Any] = {
        "api_key": client_kwargs.pop("api_key", None) or conn.password or None,
        "base_url": client_kwargs.pop("base_url", None) or conn.host or None,
    }
    options.update({k: client_kwargs.pop(k) for k in CLIENT_KWARGS if k in client_kwargs})
    # Prices (USD / 1M tokens): extra {"drift_prices": {"openai/m": 0.02}} or {"drift_price": 0.02}
    options["price_table"] = _json_value(extra.get("drift_prices"))
    options["price"] = _json_value(extra.get("drift_price"))
    if client_kwargs:
        log.warning(
            "connection %s: openai_client_kwargs %s are not used by drift's OpenAI provider",
            conn_id, sorted(client_kwargs),
        )  # fmt: skip
    return {k: v for k, v in options.items() if v is not None}


def _json_value(value: Any) -> Any:
    """Extras typed in the UI or a URI arrive as strings: decode JSON when they are."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value

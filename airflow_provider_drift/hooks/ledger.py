"""The drift_ledger connection: where the SQLite ledger lives."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_drift.engine.ledger import Ledger, resolve_ledger_path

from ._connections import missing_connection


class DriftLedgerHook(BaseHook):
    """
    Open the drift ledger named by a ``drift_ledger`` connection.

    The path is the connection's ``path`` field (``extra.path``), or its
    ``host`` (handy in ``AIRFLOW_CONN_*`` JSON). Without the default
    connection, or with an empty path, the engine's default applies:
    ``$DRIFT_LEDGER_PATH``, else ``~/.drift/ledger.db``. A connection id other
    than the default must exist — a typo must not silently open another ledger.

    :param drift_ledger_conn_id: the ``drift_ledger`` connection id.
    """

    conn_name_attr = "drift_ledger_conn_id"
    default_conn_name = "drift_ledger_default"
    conn_type = "drift_ledger"
    hook_name = "Drift ledger"

    def __init__(self, drift_ledger_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift_ledger_conn_id = drift_ledger_conn_id

    def get_path(self) -> str | None:
        """The ledger path the connection names, or None for the engine's default."""
        try:
            conn = self.get_connection(self.drift_ledger_conn_id)
        except AirflowNotFoundException as exc:
            if self.drift_ledger_conn_id == self.default_conn_name:
                return None
            raise missing_connection(
                self.drift_ledger_conn_id,
                example={"conn_type": "drift_ledger", "extra": {"path": "/path/to/ledger.db"}},
            ) from exc
        path = conn.extra_dejson.get("path") or conn.host or None
        return str(path) if path else None

    def get_ledger(self) -> Ledger:
        """Open the ledger (creating and migrating the file if needed)."""
        path = self.get_path()
        self.log.info("drift ledger: %s", resolve_ledger_path(path))
        return Ledger(path)

    @cached_property
    def ledger(self) -> Ledger:
        return self.get_ledger()

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.get_ledger() as ledger:
                return True, f"ledger at {ledger.location} is readable"
        except Exception as exc:
            return False, str(exc)

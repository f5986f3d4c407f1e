"""The ledger connection: a ``drift_ledger`` connection (an SQLite file) or a ``postgres`` one."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_drift.engine.ledger import Ledger, LedgerLocation, PostgresLedgerURL, resolve_location

from ._connections import missing_connection


class DriftLedgerHook(BaseHook):
    """
    Open the drift ledger named by a ``drift_ledger`` or a ``postgres`` connection.

    ``drift_ledger``: the path is the connection's ``path`` field
    (``extra.path``, also a ``postgresql://`` ledger URL), or its ``host``
    (handy in ``AIRFLOW_CONN_*`` JSON). Without the default connection, or
    with an empty path, the engine's default applies: ``$DRIFT_LEDGER_URL``,
    ``$DRIFT_LEDGER_PATH``, else ``~/.drift/ledger.db``.

    ``postgres`` (the official provider's type): a ledger shared by workers on
    many hosts, in the database the connection names (its ``schema`` field, as
    Airflow's postgres connection calls the database), in the PostgreSQL schema
    ``extra.ledger_schema`` (default ``drift``); other extras (``sslmode``,
    ``connect_timeout``, ...) go to libpq. The password stays in the
    connection: it is in no log line, XCom or trigger.

    A connection id other than the default must exist — a typo must not
    silently open another ledger.

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
        """The ledger path or URL the connection names, or None for the engine's default.

        For display: a PostgreSQL URL comes without its password. To open the
        ledger use :meth:`get_location` (or :meth:`get_ledger`).
        """
        location = self.get_location()
        return None if location is None else str(location)

    def get_location(self) -> LedgerLocation | None:
        """Where the ledger is: a file, a PostgreSQL URL (its str() without the password), or None."""
        try:
            conn = self.get_connection(self.drift_ledger_conn_id)
        except AirflowNotFoundException as exc:
            if self.drift_ledger_conn_id == self.default_conn_name:
                return None
            raise missing_connection(
                self.drift_ledger_conn_id,
                example={"conn_type": "drift_ledger", "extra": {"path": "/path/to/ledger.db"}},
            ) from exc
        if (conn.conn_type or "").lower() in ("postgres", "postgresql"):
            return _postgres_location(conn)
        path = conn.extra_dejson.get("path") or conn.host or None
        return resolve_location(str(path)) if path else None

    def get_ledger(self) -> Ledger:
        """Open the ledger (creating and migrating it if needed)."""
        location = resolve_location(self.get_location())
        self.log.info("drift ledger: %s", location)
        return Ledger(location)

    @cached_property
    def ledger(self) -> Ledger:
        return self.get_ledger()

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.get_ledger() as ledger:
                return True, f"ledger at {ledger.location} is readable"
        except Exception as exc:
            return False, str(exc)


def _postgres_location(conn: Any) -> PostgresLedgerURL:
    """The ledger URL of an Airflow ``postgres`` connection (libpq options from its extras)."""
    from urllib.parse import quote, urlencode

    from airflow_provider_drift.engine.ledger.location import parse_postgres_url

    extra = {k: str(v) for k, v in conn.extra_dejson.items() if v not in (None, "")}
    schema = extra.pop("ledger_schema", None) or "drift"
    # the official postgres hook's own extras, which are not libpq options
    for key in (
        "cursor",
        "iam",
        "redshift",
        "redshift-serverless",
        "aws_conn_id",
        "cluster-identifier",
        "workgroup-name",
        "enable_log_db_messages",
        "sqlalchemy_scheme",
        "sqlalchemy_query",
    ):
        extra.pop(key, None)  # fmt: skip
    user = quote(conn.login or "", safe="")
    who = f"{user}:{quote(conn.password, safe='')}@" if conn.password else (f"{user}@" if user else "")
    host = conn.host or ""
    where = f"[{host}]" if ":" in host else quote(host, safe="")
    port = f":{conn.port}" if conn.port else ""
    query = urlencode({"schema": schema, **extra})
    return parse_postgres_url(f"postgresql://{who}{where}{port}/{quote(conn.schema or '', safe='')}?{query}")

"""A Spark session from an Airflow connection: Spark Connect, or a master URL (``local[2]``, ``yarn``).

Connection types, as the Apache Spark provider defines them:

* ``spark_connect`` — host and port of a Spark Connect server (``sc://host:15002``);
  password → ``token``, extra ``use_ssl``.
* ``spark`` — the master in host (``local[4]``, ``spark://host``, ``yarn``, ``k8s://…``) and port.

Why a reachability check first: a Spark Connect client retries an unreachable
server for minutes before it says anything; a task should fail in seconds and
name the connection.
"""

from __future__ import annotations

import socket
from typing import Any

from airflow_provider_drift.engine.errors import ConfigError, SourceUnavailableError

from ._connections import as_bool, fetch_connection

DEFAULT_CONNECT_PORT = 15002
CONNECT_TIMEOUT_S = 10.0


class SparkSessionHook:
    """Build (or join) the Spark session a connection describes; ``session()`` caches it."""

    def __init__(self, spark_conn_id: str, *, app_name: str = "airflow-provider-drift") -> None:
        self.spark_conn_id = spark_conn_id
        self.app_name = app_name
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            self._session = self._start()
        return self._session

    def _start(self) -> Any:
        conn = fetch_connection(self.spark_conn_id, example={"conn_type": "spark", "host": "local[2]"})
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise ConfigError(
                f"connection {self.spark_conn_id!r} needs pyspark, which is not installed",
                hint="pip install 'airflow-provider-drift[spark]'",
            ) from exc
        if conn.conn_type == "spark_connect":
            host, port = conn.host or "localhost", int(conn.port or DEFAULT_CONNECT_PORT)
            self._reachable(host, port)
            url = f"sc://{host}:{port}/"
            params = []
            if conn.password:
                params.append(f"token={conn.password}")
            extra = conn.extra_dejson
            if as_bool(extra.get("use_ssl"), field="use_ssl", conn_id=self.spark_conn_id):
                params.append("use_ssl=true")
            url += ";".join(params)
            return self._guard(
                f"Spark Connect at {host}:{port}", lambda: SparkSession.builder.remote(url).create()
            )
        if conn.conn_type == "spark":
            master = (conn.host or "local[*]") + (f":{conn.port}" if conn.port else "")
            return self._guard(
                f"master {master}",
                lambda: SparkSession.builder.master(master).appName(self.app_name).getOrCreate(),
            )
        raise ConfigError(
            f"connection {self.spark_conn_id!r} has type {conn.conn_type!r}, not spark_connect or spark",
            hint="use a spark_connect connection (host, port of the Connect server) or a spark one "
            "(master URL in host, e.g. local[2])",
        )

    def _reachable(self, host: str, port: int) -> None:
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise SourceUnavailableError(
                f"cannot start a Spark session from connection {self.spark_conn_id!r}: "
                f"nothing answers at {host}:{port} ({exc})",
                hint="start the Spark Connect server (sbin/start-connect-server.sh) or fix the "
                "connection's host and port",
                conn_id=self.spark_conn_id,
            ) from exc

    def _guard(self, what: str, start: Any) -> Any:
        try:
            return start()
        except Exception as exc:
            first = next((x for x in str(exc).splitlines() if x.strip()), type(exc).__name__)
            raise SourceUnavailableError(
                f"cannot start a Spark session from connection {self.spark_conn_id!r} ({what}): {first}",
                hint="check the connection, that Java is installed for a local master, and the cluster",
                conn_id=self.spark_conn_id,
            ) from exc

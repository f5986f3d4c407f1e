"""DeltaCDFSensor: wait until a Delta table has committed changes a watch has not applied yet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.ledger import DriftLedgerHook
from airflow_provider_drift.operators._context import data_interval
from airflow_provider_drift.operators._errors import engine_errors
from airflow_provider_drift.operators._sink_task import check_sink_args, resolve_sink_spec
from airflow_provider_drift.triggers.delta_cdf import EVENT_STATUSES, DeltaCDFTrigger
from airflow_provider_drift.triggers.events import checked_event

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_drift.engine.pending import ChangeCheck


class DeltaCDFSensor(BaseSensorOperator):
    """
    Wait until a Delta table has committed changes after the ledger's watermark for a sink.

    Pair it with :class:`~airflow_provider_drift.operators.watch.WatchOperator`
    given the same table and sink. Done when at least ``min_versions`` commits
    (and, if set, ``min_changed_rows`` changed rows) are pending; with no
    watermark yet the whole snapshot is pending, so the first run never waits.
    The pending range ``{"since_version", "to_version", "n_versions", "n_rows"}``
    is the XCom return value (use ``to_version`` as the watch's ``until_version``
    to apply exactly what the sensor saw).

    With ``watch_mode="interval"`` only commits inside the run's data interval
    count; once that interval has ended nothing can become pending, so an
    interval without pending commits skips the downstream watch instead of
    waiting.

    ``deferrable=True`` checks once, then hands the wait to a
    :class:`~airflow_provider_drift.triggers.delta_cdf.DeltaCDFTrigger` in the
    triggerer (no worker slot held between checks).

    :param table: path/URI of the Delta table (templated).
    :param ledger_conn_id: the ``drift_ledger`` connection holding the watermark.
    :param sink: sink URI the watch writes (templated). Exclusive with ``sink_conn_id``.
    :param sink_conn_id: a ``qdrant`` or ``postgres`` connection; needs ``collection``.
    :param collection: Qdrant collection or pgvector table (templated); alone: the embedded default sink.
    :param sink_schema: Postgres schema of the pgvector table (templated).
    :param source_name: the source name the watch uses, if overridden there (templated).
    :param watch_mode: ``"watermark"`` (default) or ``"interval"``, as the watch's ``mode``.
    :param min_versions: commits needed before the watch runs.
    :param min_changed_rows: changed rows needed as well (reads the change feed's change types).
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("table", "sink", "collection", "sink_schema", "source_name")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        table: str,
        ledger_conn_id: str = DriftLedgerHook.default_conn_name,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        collection: str | None = None,
        sink_schema: str | None = None,
        source_name: str | None = None,
        watch_mode: Literal["watermark", "interval"] = "watermark",
        min_versions: int = 1,
        min_changed_rows: int | None = None,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        check_sink_args(sink=sink, sink_conn_id=sink_conn_id, collection=collection, sink_schema=sink_schema)
        if watch_mode not in ("watermark", "interval"):
            raise ConfigError(f"unknown watch_mode {watch_mode!r}", hint="use 'watermark' or 'interval'")
        if min_versions < 1 or (min_changed_rows is not None and min_changed_rows < 0):
            raise ConfigError(
                "min_versions must be >= 1 and min_changed_rows >= 0",
                hint="e.g. min_versions=1, min_changed_rows=1000",
            )
        super().__init__(**kwargs)
        self.table = table
        self.ledger_conn_id = ledger_conn_id
        self.sink = sink
        self.sink_conn_id = sink_conn_id
        self.collection = collection
        self.sink_schema = sink_schema
        self.source_name = source_name
        self.watch_mode = watch_mode
        self.min_versions = min_versions
        self.min_changed_rows = min_changed_rows
        self.deferrable = deferrable

    @cached_property
    def ledger_location(self) -> Any:
        """The ledger, resolved on the worker so the triggerer reads the same one."""
        from airflow_provider_drift.engine.ledger import resolve_location

        return resolve_location(DriftLedgerHook(drift_ledger_conn_id=self.ledger_conn_id).get_location())

    @cached_property
    def ledger_path(self) -> str:
        """The ledger as the trigger is given it: a file, or a PostgreSQL URL without its password."""
        return str(self.ledger_location)

    @property
    def _ledger_is_remote(self) -> bool:
        from airflow_provider_drift.engine.ledger import PostgresLedgerURL

        return isinstance(self.ledger_location, PostgresLedgerURL)

    @cached_property
    def sink_uri(self) -> str:
        """The sink's identity as the ledger records it (credential-free), without connecting to the sink."""
        from airflow_provider_drift.engine.pending import recorded_sink_uri

        spec = resolve_sink_spec(
            sink=self.sink,
            sink_conn_id=self.sink_conn_id,
            collection=self.collection,
            sink_schema=self.sink_schema,
        )
        with engine_errors():
            return recorded_sink_uri(spec.uri, ledger=self.ledger_location)

    @cached_property
    def source(self) -> str:
        from airflow_provider_drift.engine.sources import source_name

        return self.source_name or source_name(self.table)

    def _interval(self, context: Context) -> tuple[datetime, datetime] | None:
        return data_interval(context) if self.watch_mode == "interval" else None

    def _check(self, context: Context) -> ChangeCheck:
        from airflow_provider_drift.engine.pending import check_changes

        with engine_errors():
            return check_changes(
                self.table,
                sink_uri=self.sink_uri,
                ledger=self.ledger_location,
                source=self.source,
                interval=self._interval(context),
                min_versions=self.min_versions,
                min_changed_rows=self.min_changed_rows,
            )

    def poke(self, context: Context) -> PokeReturnValue:
        found = self._check(context)
        self.log.info("%s: %s", self.table, found.pending)
        if not found.ready and found.final:
            raise AirflowSkipException(f"no pending changes of {self.table} in this data interval")
        return PokeReturnValue(
            is_done=found.ready, xcom_value=found.pending.to_dict() if found.ready else None
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        interval = self._interval(context)
        self.defer(
            trigger=DeltaCDFTrigger(
                table=self.table,
                source=self.source,
                sink_uri=self.sink_uri,
                ledger_path=self.ledger_path,
                # a PostgreSQL ledger's password stays in the connection, never in the trigger row
                ledger_conn_id=self.ledger_conn_id if self._ledger_is_remote else None,
                interval_start=interval[0].isoformat() if interval else None,
                interval_end=interval[1].isoformat() if interval else None,
                min_versions=self.min_versions,
                min_changed_rows=self.min_changed_rows,
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the pending range from the trigger's event; reject anything the trigger never sends."""
        event = checked_event(
            event, trigger="DeltaCDFTrigger", statuses=EVENT_STATUSES, requires=("pending",)
        )
        if event["status"] == "skipped":
            raise AirflowSkipException(f"no pending changes of {self.table} in this data interval")
        pending = event.get("pending")
        if not isinstance(pending, dict) or "to_version" not in pending:
            raise AirflowException(f"DeltaCDFTrigger sent a success event without a version range: {event!r}")
        self.log.info("%s: %s", self.table, pending)
        return pending

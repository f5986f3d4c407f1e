"""WatchOperator: apply a Delta table's change data feed to a vector collection as an Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.ledger import DriftLedgerHook

from ._context import data_interval, run_context
from ._errors import engine_errors
from ._sink_task import SinkTaskMixin, check_sink_args
from .assets import sink_asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context


WatchMode = Literal["watermark", "interval"]
DEFAULT_BATCH_SIZE = 4096


def as_version(value: Any, *, name: str) -> int | None:
    """Read a version given as int or as a rendered template string ("" and "None" mean unset)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a table version (an integer), got {value!r}", hint=f"fix {name}"
        ) from None


class WatchOperator(SinkTaskMixin, BaseOperator):
    """
    Keep a vector collection equal to a Delta table by applying its change data feed.

    Only rows whose text changed are embedded; deletes remove their points.
    The first run (no watermark yet) embeds the current snapshot and sets the
    watermark to its version. Each later run reads the commits after the
    watermark (exclusive) and moves it forward only once every write
    succeeded, so a failed run is simply re-run. A per-key version guard in
    the ledger makes re-runs and backfills in any order safe: a change older
    than what the collection holds for that key is never applied.

    ``mode="interval"`` applies only the commits whose commit time falls in
    the run's data interval — the same commits every time the interval is
    re-run, which is what backfills want. Schedule such DAGs with a
    data-interval timetable (``CronDataIntervalTimetable``): Airflow 3's
    default cron timetable gives zero-length intervals.

    The run record is returned as the ``return_value`` XCom; the collection is
    declared as an outlet Asset.

    :param table: path/URI of the Delta table (templated).
    :param text_col: column holding the text to embed (templated).
    :param key_col: column identifying a row, e.g. the primary key (templated).
    :param model: ``provider/model`` (templated).
    :param mode: ``"watermark"`` (default) or ``"interval"``.
    :param source_name: stable source name in point ids (default: from the path, as for embed) (templated).
    :param sink: sink URI (templated). Exclusive with ``sink_conn_id``.
    :param sink_conn_id: a ``qdrant`` or ``postgres`` (pgvector) connection; needs ``collection``.
    :param collection: Qdrant collection or pgvector table (templated); alone: the embedded default sink.
    :param sink_schema: Postgres schema of the pgvector table (templated).
    :param ledger_conn_id: the ``drift_ledger`` connection.
    :param openai_conn_id: an ``openai`` connection for ``openai/...`` models.
    :param shadow_mode: deterministic offline vectors: no API key, no cost.
    :param since_version: apply versions after this one when it is past the watermark (templated).
    :param until_version: apply versions up to this one, e.g. what the sensor saw (templated).
    :param full_refresh: embed the current snapshot and move the watermark to it (after a VACUUM).
    :param batch_size: keys per write batch.
    :param dim: vector size for models the engine does not know.
    :param store_text: also store the text in the point payload.
    :param on_invalid: ``"error"`` fails on a null key or null/blank text; ``"skip"`` leaves such rows out.
    :param spark_conn_id: a ``spark_connect`` or ``spark`` (master URL) connection: the change feed
        is read through that session (``readChangeFeed``, needs delta-spark on it); ``table`` may
        then name a catalog table.
    """

    template_fields: Sequence[str] = (
        "table",
        "source_name",
        "text_col",
        "key_col",
        "model",
        "sink",
        "collection",
        "sink_schema",
        "since_version",
        "until_version",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        table: str,
        text_col: str,
        key_col: str,
        model: str,
        mode: WatchMode = "watermark",
        source_name: str | None = None,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        collection: str | None = None,
        sink_schema: str | None = None,
        ledger_conn_id: str = DriftLedgerHook.default_conn_name,
        openai_conn_id: str | None = None,
        shadow_mode: bool = False,
        since_version: int | str | None = None,
        until_version: int | str | None = None,
        full_refresh: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dim: int | None = None,
        store_text: bool = False,
        on_invalid: Literal["error", "skip"] = "error",
        spark_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in ("watermark", "interval"):
            raise ConfigError(f"unknown watch mode {mode!r}", hint="use mode='watermark' or mode='interval'")
        check_sink_args(sink=sink, sink_conn_id=sink_conn_id, collection=collection, sink_schema=sink_schema)
        super().__init__(**kwargs)
        self.table = table
        self.text_col = text_col
        self.key_col = key_col
        self.model = model
        self.watch_mode: WatchMode = mode
        self.source_name = source_name
        self.sink = sink
        self.sink_conn_id = sink_conn_id
        self.collection = collection
        self.sink_schema = sink_schema
        self.ledger_conn_id = ledger_conn_id
        self.openai_conn_id = openai_conn_id
        self.shadow_mode = shadow_mode
        self.since_version = since_version
        self.until_version = until_version
        self.full_refresh = full_refresh
        self.batch_size = batch_size
        self.dim = dim
        self.store_text = store_text
        self.on_invalid = on_invalid
        self.spark_conn_id = spark_conn_id
        self.collection_outlet = self._collection_outlet()
        self.add_outlets([self.collection_outlet])

    def _spark(self) -> Any:
        if not self.spark_conn_id:
            return None
        from airflow_provider_drift.hooks.spark import SparkSessionHook

        return SparkSessionHook(self.spark_conn_id).session()

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_drift.engine.watch import watch

        with engine_errors():
            interval = data_interval(context) if self.watch_mode == "interval" else None
            try:
                run = watch(
                    self.table,
                    source=self.source_name or None,
                    text_col=self.text_col,
                    key_col=self.key_col,
                    model=self.model,
                    sink=self.sink_spec.uri,
                    sink_options=self.sink_spec.options,
                    ledger=self.ledger,
                    shadow_mode=self.shadow_mode,
                    since_version=as_version(self.since_version, name="since_version"),
                    until_version=as_version(self.until_version, name="until_version"),
                    interval=interval,
                    full_refresh=self.full_refresh,
                    batch_size=self.batch_size,
                    dim=self.dim,
                    store_text=self.store_text,
                    on_invalid=self.on_invalid,
                    provider_options=self.provider_options,
                    run_context=run_context(context),
                    spark=self._spark(),
                )
            finally:
                if "ledger" in self.__dict__:
                    self.ledger.close()
                    del self.__dict__["ledger"]
        self._emit_rendered_asset(context)
        self.log.info(
            "watch %s (%s) v%s -> v%s: %d changes, %d inserted, %d updated, %d deleted, %d unchanged, "
            "%d stale skipped, %d embedded, cost %s",
            run.sink, run.mode, run.since_version, run.to_version, run.n_changes, run.n_inserted,
            run.n_updated, run.n_deleted, run.n_unchanged, run.n_stale_skipped, run.n_embedded,
            "unknown" if run.cost_usd is None else f"${run.cost_usd:.6f}",
        )  # fmt: skip
        return run.to_dict()

    def _collection_outlet(self) -> Asset | AssetAlias:
        """The collection's Asset, or an alias resolved at run time when its name is templated."""
        identity = (self.sink, self.sink_conn_id, self.collection, self.sink_schema)
        if any(v and "{{" in v for v in identity):
            owner = f"{self.dag.dag_id}." if self.has_dag() else ""
            return AssetAlias(f"drift-collection:{owner}{self.task_id}")
        return Asset(self._asset_uri())

    def _asset_uri(self) -> str:
        return sink_asset_uri(
            sink=self.sink,
            sink_conn_id=self.sink_conn_id,
            collection=self.collection,
            schema=self.sink_schema,
        )

    def _emit_rendered_asset(self, context: Context) -> None:
        if isinstance(self.collection_outlet, AssetAlias):
            context["outlet_events"][self.collection_outlet].add(Asset(self._asset_uri()))

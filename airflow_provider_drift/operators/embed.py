"""EmbedOperator: run the engine's ``embed()`` as an Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.embedding import provider_options_from_connection
from airflow_provider_drift.hooks.ledger import DriftLedgerHook
from airflow_provider_drift.hooks.sink import DriftSinkHook, SinkSpec

from ._context import run_context
from ._errors import engine_errors
from .assets import sink_asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_drift.engine.ledger import Ledger

DEFAULT_BATCH_SIZE = 4096


class EmbedOperator(BaseOperator):
    """
    Embed the rows of a Delta table or Parquet file into a vector collection.

    Rows whose text the sink already holds for the same key and model are
    skipped, so a re-run over unchanged data embeds and writes nothing. The run
    record (counts, tokens, cost) is returned as the ``return_value`` XCom and
    recorded in the ledger with the DAG, task and run ids. The collection is
    declared as an outlet Asset (see :func:`airflow_provider_drift.operators.assets.sink_asset`),
    so DAGs scheduled on it run after each embed (not after a dry run). When the
    collection or sink is templated, the outlet is an ``AssetAlias`` that resolves
    to the rendered collection's Asset at run time.

    Terminal engine errors (bad input or config, missing connection, dimension
    mismatch) fail the task without retry; transient ones (sink or provider
    unreachable) are left to the task's ``retries``.

    :param source: path or URI of the Delta table or Parquet file to read (templated).
    :param table: same as ``source``, for readers who think in tables; pass one of the two (templated).
    :param source_name: stable name of the source in point ids and the ledger
        (default: derived from the path). Keep it fixed across runs (templated).
    :param text_col: column holding the text to embed (templated).
    :param key_col: column identifying a row, e.g. the primary key (templated).
    :param model: ``provider/model``, e.g. ``openai/text-embedding-3-small`` (templated).
    :param sink: sink URI, e.g. ``qdrant://host:6333/docs`` or
        ``qdrant+local:///data/qdrant/docs`` (templated). Exclusive with ``sink_conn_id``.
    :param sink_conn_id: a ``qdrant`` or ``postgres`` (pgvector) connection; needs ``collection``.
    :param collection: the Qdrant collection or pgvector table (templated). With neither
        ``sink`` nor ``sink_conn_id``, the embedded default sink for this collection is used.
    :param sink_schema: Postgres schema of the pgvector table (templated).
    :param ledger_conn_id: the ``drift_ledger`` connection; if the default one is absent,
        ``$DRIFT_LEDGER_PATH`` or ``~/.drift/ledger.db`` is used.
    :param openai_conn_id: an ``openai`` connection for ``openai/...`` models (API key, base URL).
    :param shadow_mode: deterministic offline vectors: no API key, no cost.
    :param filter: row predicate applied to the source, e.g. ``"product = 'Acme API'"`` (templated).
        Leave ``delete_missing`` off when filtering.
    :param dedup: skip rows the sink already holds with the same text and model.
    :param batch_size: rows per pipeline batch; a failure loses at most the batch in flight.
    :param dim: vector size for models the engine does not know.
    :param store_text: also store the text in the point payload (off: privacy).
    :param delete_missing: after a full pass, delete points whose rows left the source.
    :param dry_run: plan only: count the work and estimate cost; nothing is sent or written.
    :param on_invalid: ``"error"`` fails on a null/empty text or duplicate key; ``"skip"`` counts and skips.
    """

    template_fields: Sequence[str] = (
        "source",
        "table",
        "source_name",
        "text_col",
        "key_col",
        "model",
        "sink",
        "collection",
        "sink_schema",
        "filter",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        text_col: str,
        key_col: str,
        model: str,
        source: str | None = None,
        table: str | None = None,
        source_name: str | None = None,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        collection: str | None = None,
        sink_schema: str | None = None,
        ledger_conn_id: str = DriftLedgerHook.default_conn_name,
        openai_conn_id: str | None = None,
        shadow_mode: bool = False,
        filter: str | None = None,
        dedup: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dim: int | None = None,
        store_text: bool = False,
        delete_missing: bool = False,
        dry_run: bool = False,
        on_invalid: Literal["error", "skip"] = "error",
        **kwargs: Any,
    ) -> None:
        if (source is None) == (table is None):
            raise ConfigError("pass exactly one of source= or table=", hint="both name the table to read")
        if sink and sink_conn_id:
            raise ConfigError("pass either sink= or sink_conn_id=, not both", hint="keep one of them")
        if sink and (collection or sink_schema):
            raise ConfigError(
                "a sink URI already names its collection; collection=/sink_schema= would be ignored",
                hint="drop collection=/sink_schema=, or use sink_conn_id= with collection=",
            )
        if not sink and not collection:
            raise ConfigError(
                "no collection to write",
                hint="pass collection= (with sink_conn_id= or for the embedded default), or a sink URI",
            )
        super().__init__(**kwargs)
        self.source = source
        self.table = table
        self.source_name = source_name
        self.text_col = text_col
        self.key_col = key_col
        self.model = model
        self.sink = sink
        self.sink_conn_id = sink_conn_id
        self.collection = collection
        self.sink_schema = sink_schema
        self.ledger_conn_id = ledger_conn_id
        self.openai_conn_id = openai_conn_id
        self.shadow_mode = shadow_mode
        self.filter = filter
        self.dedup = dedup
        self.batch_size = batch_size
        self.dim = dim
        self.store_text = store_text
        self.delete_missing = delete_missing
        self.is_dry_run = dry_run  # BaseOperator.dry_run() is a method
        self.on_invalid = on_invalid
        self.collection_outlet = self._collection_outlet()
        if not dry_run:  # a plan writes nothing: downstream DAGs must not run on it
            self.add_outlets([self.collection_outlet])

    @cached_property
    def ledger(self) -> Ledger:
        return DriftLedgerHook(drift_ledger_conn_id=self.ledger_conn_id).get_ledger()

    @cached_property
    def sink_spec(self) -> SinkSpec:
        """Where to write: the sink URI, the connection's sink, or the embedded default."""
        if self.sink:
            return SinkSpec(uri=self.sink)
        if self.sink_conn_id:
            hook = DriftSinkHook(self.sink_conn_id, collection=self.collection, schema=self.sink_schema)
            return hook.get_spec()
        from airflow_provider_drift.engine.sinks import default_sink_uri

        return SinkSpec(uri=default_sink_uri(str(self.collection)))

    @cached_property
    def provider_options(self) -> dict[str, Any] | None:
        return provider_options_from_connection(self.openai_conn_id) if self.openai_conn_id else None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_drift.engine.embed import embed

        with engine_errors():
            try:
                run = embed(
                    self.source or self.table,
                    source=self.source_name,
                    text_col=self.text_col,
                    key_col=self.key_col,
                    model=self.model,
                    sink=self.sink_spec.uri,
                    sink_options=self.sink_spec.options,
                    ledger=self.ledger,
                    shadow_mode=self.shadow_mode,
                    dedup=self.dedup,
                    batch_size=self.batch_size,
                    dim=self.dim,
                    filter=self.filter,
                    store_text=self.store_text,
                    delete_missing=self.delete_missing,
                    dry_run=self.is_dry_run,
                    on_invalid=self.on_invalid,
                    provider_options=self.provider_options,
                    run_context=run_context(context),
                )
            finally:
                if "ledger" in self.__dict__:
                    self.ledger.close()
                    del self.__dict__["ledger"]
        self._emit_rendered_asset(context)
        self.log.info(
            "embedded %s: %d rows, %d unchanged, %d embedded, %d written, %d deleted, cost %s",
            run.sink, run.n_rows_processed, run.n_rows_deduped, run.n_embedded, run.n_written,
            run.n_deleted, "unknown" if run.cost_usd is None else f"${run.cost_usd:.6f}",
        )  # fmt: skip
        return run.to_dict()

    def _collection_outlet(self) -> Asset | AssetAlias:
        """The collection's Asset, or an alias resolved at run time when its name is templated."""
        identity = (self.sink, self.sink_conn_id, self.collection, self.sink_schema)
        if any(v is not None and (not isinstance(v, str) or "{{" in v) for v in identity):
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
        """Attach the rendered collection Asset to the alias when the collection was templated."""
        if isinstance(self.collection_outlet, AssetAlias) and not self.is_dry_run:
            context["outlet_events"][self.collection_outlet].add(Asset(self._asset_uri()))

"""EmbedOperator: run the engine's ``embed()`` as an Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.ledger import DriftLedgerHook
from airflow_provider_drift.triggers.events import checked_event
from airflow_provider_drift.triggers.openai_batch import EVENT_STATUSES, OpenAIBatchTrigger

from ._context import run_context
from ._errors import engine_errors
from ._sink_task import SinkTaskMixin, check_sink_args
from .assets import sink_asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context


DEFAULT_BATCH_SIZE = 4096
DEFAULT_POLL_INTERVAL = 300.0


class EmbedOperator(SinkTaskMixin, BaseOperator):
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

    ``batch_api=True`` (``openai/...`` models only) embeds through the OpenAI
    Batch API at half the price, results within 24 hours: the task plans the
    rows as usual, submits the texts that need the provider, and defers to
    :class:`~airflow_provider_drift.triggers.openai_batch.OpenAIBatchTrigger`
    (no worker slot is held while the batch runs). When every batch is done
    the task resumes, writes the rows and returns the run record with the
    discounted cost. With nothing to embed it does not defer. If some batch
    lines failed or expired, the rows with vectors are written and recorded
    and the task fails; a re-run submits only the missing texts. A Delta table
    is read again at the version submitted; rows of other sources that changed
    in between are embedded synchronously at the full price. See
    ``docs/batch-api.md``.

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
    :param batch_api: embed through the OpenAI Batch API (half price, deferred up to 24 h);
        not with ``shadow_mode`` or ``delete_missing``.
    :param spark_conn_id: a ``spark_connect`` or ``spark`` (master URL, e.g. ``local[2]``)
        connection: the table is read as a Spark DataFrame and, with a sink every executor
        can reach (pgvector, Qdrant server), planned, embedded and written on the executors;
        the ledger is recorded by this task. A name without a path is a catalog table.
    :param poll_interval: seconds between the trigger's status polls of the batches.
    :param batch_timeout: how long the task may stay deferred before it fails (default 25 h:
        the Batch API's 24 h window plus time to finalise).
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
    #: the resume key of the Batch API job this task is submitting, until it defers
    _submitting: str | None = None

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
        batch_api: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        batch_timeout: timedelta | None = timedelta(hours=25),
        spark_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if batch_api:
            _check_batch_api(model, shadow_mode=shadow_mode, delete_missing=delete_missing)
        if (source is None) == (table is None):
            raise ConfigError("pass exactly one of source= or table=", hint="both name the table to read")
        check_sink_args(sink=sink, sink_conn_id=sink_conn_id, collection=collection, sink_schema=sink_schema)
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
        self.batch_api = batch_api
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self.spark_conn_id = spark_conn_id
        self.collection_outlet = self._collection_outlet()
        if not dry_run:  # a plan writes nothing: downstream DAGs must not run on it
            self.add_outlets([self.collection_outlet])

    def _spark_input(self) -> tuple[Any, str | None, Any]:
        """(what embed reads, its source name, the Spark session or None)."""
        location = self.source or self.table
        if not self.spark_conn_id:
            return location, self.source_name, None
        from airflow_provider_drift.engine.spark.frames import spark_frame
        from airflow_provider_drift.hooks.spark import SparkSessionHook

        session = SparkSessionHook(self.spark_conn_id).session()
        frame, name = spark_frame(session, str(location))
        return frame, self.source_name or name, session

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_drift.engine.embed import embed

        if self.batch_api:
            return self._submit(context)
        with engine_errors():
            data, name, spark = self._spark_input()
            try:
                run = embed(
                    data,
                    source=name,
                    spark=spark,
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

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: write the batches' results; reject events the trigger never sends."""
        event = checked_event(event, trigger="OpenAIBatchTrigger", statuses=EVENT_STATUSES, requires=("job",))
        job = event["job"]
        if not isinstance(job, dict) or not job.get("run_id"):
            raise AirflowException(f"OpenAIBatchTrigger sent a success event without the job: {event!r}")
        self.log.info("batches done: %s", event.get("batches"))
        return self._complete(context, job)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after deferral; past ``batch_timeout``, cancel the job's batches and fail without retry."""
        from airflow.sdk.exceptions import TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as exc:
            if not self.batch_api:
                raise
            reason = f"the Batch API job did not finish within batch_timeout={self.batch_timeout}"
            cancelled = self._abandon(_resume_key(context), reason=reason)
            raise AirflowFailException(
                f"{reason}: cancelled batch(es) {', '.join(cancelled) or 'none'}; nothing was written. "
                "Re-run the task to submit again (a longer batch_timeout, or fewer rows per task)"
            ) from exc

    def on_kill(self) -> None:
        """Killed while submitting to the Batch API: cancel what was submitted, which nothing will fetch.

        While deferred, the trigger's ``on_kill`` cancels the batches; while writing the
        results (after the trigger fired) nothing is cancelled: a retry finishes the job.
        """
        if self._submitting is not None:
            self._abandon(self._submitting, reason="the task was killed while submitting to the Batch API")

    def _abandon(self, resume_key: str, *, reason: str) -> list[str]:
        from airflow_provider_drift.engine.batch_embed import abandon_job, open_job

        with DriftLedgerHook(drift_ledger_conn_id=self.ledger_conn_id).get_ledger() as ledger:
            job = open_job(ledger, resume_key, submitted=False)
            if job is None:
                return []
            self.log.warning("%s: abandoning the job of run %s", reason, job.run_id)
            return abandon_job(job, reason=reason, ledger=ledger, provider_options=self.provider_options)

    def _submit(self, context: Context) -> dict[str, Any]:
        """Plan and submit; defer while the batches run, or complete at once when nothing was sent."""
        from airflow_provider_drift.engine.batch_embed import plan_batch_embed, submit_embed

        with engine_errors():
            _check_batch_api(self.model, shadow_mode=self.shadow_mode, delete_missing=self.delete_missing)
            common: dict[str, Any] = {
                "source": self.source_name,
                "text_col": self.text_col,
                "key_col": self.key_col,
                "model": self.model,
                "sink": self.sink_spec.uri,
                "sink_options": self.sink_spec.options,
                "dedup": self.dedup,
                "batch_size": self.batch_size,
                "dim": self.dim,
                "filter": self.filter,
                "store_text": self.store_text,
                "on_invalid": self.on_invalid,
                "provider_options": self.provider_options,
            }
            try:
                if self.is_dry_run:
                    return plan_batch_embed(self.source or self.table, ledger=self.ledger, **common).to_dict()
                # a retry of this task instance resumes its submitted job instead of paying again
                self._submitting = _resume_key(context)
                job = submit_embed(
                    self.source or self.table,
                    ledger=self.ledger,
                    run_context=run_context(context),
                    resume_key=self._submitting,
                    **common,
                )
            finally:
                self._close_ledger()
        if not job.batch_ids:
            self._submitting = None
            self.log.info(
                "nothing to send to the Batch API: writing the %d reusable rows now", job.n_rows_todo
            )
            return self._complete(context, job.to_dict())
        self.log.info(
            "submitted %d texts for %d rows in batch(es) %s (~%d tokens, est. %s); deferring",
            job.n_texts_submitted, job.n_rows_todo, ", ".join(job.batch_ids), job.estimated_tokens,
            "unknown" if job.estimated_cost_usd is None else f"${job.estimated_cost_usd:.6f}",
        )  # fmt: skip
        self.defer(
            trigger=OpenAIBatchTrigger(
                batch_ids=job.batch_ids,
                model=job.model,
                openai_conn_id=self.openai_conn_id,
                dim=job.dim,
                poll_interval=self.poll_interval,
                job=job.to_dict(),
            ),
            method_name="execute_complete",
            timeout=self.batch_timeout,
        )

    def _complete(self, context: Context, job: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_drift.engine.batch_embed import complete_embed

        with engine_errors():
            try:
                run = complete_embed(
                    job,
                    sink=self.sink_spec.uri,
                    sink_options=self.sink_spec.options,
                    ledger=self.ledger,
                    provider_options=self.provider_options,
                )
            finally:
                self._close_ledger()
        self._emit_rendered_asset(context)
        self.log.info(
            "embedded %s via the Batch API: %d rows, %d unchanged, %d embedded, %d written, cost %s",
            run.sink, run.n_rows_processed, run.n_rows_deduped, run.n_embedded, run.n_written,
            "unknown" if run.cost_usd is None else f"${run.cost_usd:.6f}",
        )  # fmt: skip
        return run.to_dict()

    def _close_ledger(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()
            del self.__dict__["ledger"]

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


def _resume_key(context: Context) -> str:
    """Who submits a Batch API job: this task instance (its retries and resumptions share the key)."""
    ids = run_context(context)
    return "/".join(str(ids[k]) for k in ("dag_id", "task_id", "run_id", "map_index"))


def _check_batch_api(model: str, *, shadow_mode: bool, delete_missing: bool) -> None:
    """Reject what the Batch API path cannot do; a templated model is checked again at run time."""
    if shadow_mode:
        raise ConfigError("batch_api=True cannot run in shadow_mode", hint="drop one of the two")
    if delete_missing:
        raise ConfigError(
            "batch_api=True does not support delete_missing",
            hint="run a synchronous embed with delete_missing=True for the clean-up",
        )
    if "{{" not in model and not model.startswith("openai/"):
        raise ConfigError(
            f"batch_api=True needs an openai/... model, not {model!r}",
            hint="use an openai/<model> (the OpenAI Batch API), or batch_api=False",
        )

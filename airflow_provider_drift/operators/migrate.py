"""MigrateOperator: run one step of the engine's ``migrate()`` as an Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.ledger import DriftLedgerHook

from ._context import run_context
from ._errors import engine_errors
from ._sink_task import SinkTaskMixin, check_sink_args

if TYPE_CHECKING:
    from airflow.sdk import Context


STRATEGIES = ("dual-write", "drift-adapter", "shadow-eval")
ACTIONS = ("start", "sync", "cutover", "rollback", "finish")


class MigrateOperator(SinkTaskMixin, BaseOperator):
    """
    Move a vector collection to a new embedding model: rebuild, adapt, or measure first.

    * ``strategy="shadow-eval"`` measures, on a sample of the collection's own
      texts, how the new model's neighbours agree with the old model's and how
      much an adapter recovers (ARR@k); nothing is changed. Branch on
      ``metrics["recommended_strategy"]`` or ``passed``.
    * ``strategy="drift-adapter"`` fits a map from the new model's space into
      the old index's, measures it on held-out pairs, and stores it only if its
      ARR@k reaches ``threshold``. Below it the task **fails without retries**
      (``AdapterQualityError``: the message gives the measured ARR and says to
      use dual-write). Queries then go through ``engine.query.nearest``.
    * ``strategy="dual-write"`` builds a new collection with the new model
      beside the old one (``action="start"``), catches it up (``"sync"``),
      switches the serving alias atomically (``"cutover"``), switches back
      (``"rollback"``) or closes the migration (``"finish"``, with
      ``drop=True`` to delete the old collection). A cutover of an unfinished
      migration fails without retries and changes nothing.

    The run record (``MigrateRun``: ARR, overlap, adapter path, state, cost,
    ...) is returned as the ``return_value`` XCom and recorded in the ledger.

    :param from_model: the model the collection was embedded with (templated).
    :param to_model: the new model (templated).
    :param strategy: ``"dual-write"``, ``"drift-adapter"`` or ``"shadow-eval"`` (templated).
    :param action: dual-write step: ``start``, ``sync``, ``cutover``, ``rollback``, ``finish`` (templated).
    :param sink: sink URI of the collection (templated). Exclusive with ``sink_conn_id``.
    :param sink_conn_id: a ``qdrant`` or ``postgres`` (pgvector) connection; needs ``collection``.
    :param collection: the Qdrant collection or pgvector table (templated); alone: the embedded default sink.
    :param sink_schema: Postgres schema of the pgvector table (templated).
    :param source: where the texts are when the recorded source name is not a readable location:
        a Delta/Parquet path (templated).
    :param text_col: text column (default: recorded with the run that wrote the points) (templated).
    :param key_col: key column (default: recorded) (templated).
    :param sample_size: paired texts for the adapter (5000) or texts for the evaluation (1000) (templated).
    :param threshold: the quality gate on ARR@10 measured on a test split and estimated at the
        collection's size (default: the engine's, from evidence) (templated).
    :param target_collection: dual-write: name of the new collection (templated).
    :param alias: dual-write: the serving alias readers query (templated).
    :param drop: ``finish``: drop the old collection; ``rollback``: drop the new one.
    :param shadow_mode: deterministic offline vectors: no API key, no cost.
    :param dim: the new model's vector size, for models the engine does not know.
    :param ledger_conn_id: the ``drift_ledger`` connection.
    :param openai_conn_id: an ``openai`` connection for ``openai/...`` models.
    """

    template_fields: Sequence[str] = (
        "from_model",
        "to_model",
        "strategy",
        "action",
        "sink",
        "collection",
        "sink_schema",
        "source",
        "text_col",
        "key_col",
        "sample_size",
        "threshold",
        "target_collection",
        "alias",
    )
    ui_color = "#fef3e0"

    def __init__(
        self,
        *,
        from_model: str,
        to_model: str,
        strategy: str,
        action: str = "start",
        sink: str | None = None,
        sink_conn_id: str | None = None,
        collection: str | None = None,
        sink_schema: str | None = None,
        source: str | None = None,
        text_col: str | None = None,
        key_col: str | None = None,
        sample_size: int | str | None = None,
        threshold: float | str | None = None,
        target_collection: str | None = None,
        alias: str | None = None,
        drop: bool = False,
        shadow_mode: bool = False,
        dim: int | None = None,
        ledger_conn_id: str = DriftLedgerHook.default_conn_name,
        openai_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_sink_args(sink=sink, sink_conn_id=sink_conn_id, collection=collection, sink_schema=sink_schema)
        _check_choice("strategy", strategy, STRATEGIES)
        _check_choice("action", action, ACTIONS)
        super().__init__(**kwargs)
        self.from_model = from_model
        self.to_model = to_model
        self.strategy = strategy
        self.action = action
        self.sink = sink
        self.sink_conn_id = sink_conn_id
        self.collection = collection
        self.sink_schema = sink_schema
        self.source = source
        self.text_col = text_col
        self.key_col = key_col
        self.sample_size = sample_size
        self.threshold = threshold
        self.target_collection = target_collection
        self.alias = alias
        self.drop = drop
        self.shadow_mode = shadow_mode
        self.dim = dim
        self.ledger_conn_id = ledger_conn_id
        self.openai_conn_id = openai_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_drift.engine.migrate import migrate

        with engine_errors():
            _check_choice("strategy", self.strategy, STRATEGIES)  # templated: checked again once rendered
            _check_choice("action", self.action, ACTIONS)
            try:
                run = migrate(
                    self.from_model,
                    self.to_model,
                    self.sink_spec.uri,
                    strategy=self.strategy,  # type: ignore[arg-type]
                    action=self.action,  # type: ignore[arg-type]
                    source=self.source or None,
                    text_col=self.text_col or None,
                    key_col=self.key_col or None,
                    sample_size=_number(self.sample_size, int, name="sample_size"),
                    threshold=_number(self.threshold, float, name="threshold"),
                    target_collection=self.target_collection or None,
                    alias=self.alias or None,
                    drop=self.drop,
                    shadow_mode=self.shadow_mode,
                    dim=self.dim,
                    ledger=self.ledger,
                    provider_options=self.provider_options,
                    sink_options=self.sink_spec.options,
                    run_context=run_context(context),
                )
            finally:
                if "ledger" in self.__dict__:
                    self.ledger.close()
                    del self.__dict__["ledger"]
        self.log.info(
            "migrate %s (%s) %s -> %s on %s: state %s, ARR %s, overlap %s, passed %s, %d embedded, cost %s",
            run.strategy, run.metrics.get("action") or "-", run.from_model, run.to_model, run.sink,
            run.metrics.get("state", "-"), _fmt(run.arr), _fmt(run.overlap), run.passed, run.n_embedded,
            "unknown" if run.cost_usd is None else f"${run.cost_usd:.6f}",
        )  # fmt: skip
        return run.to_dict()


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if isinstance(value, str) and "{{" in value:
        return  # a template, rendered before execute
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}", hint=f"use one of {', '.join(choices)}")


def _number(value: Any, kind: type, *, name: str) -> Any:
    """A number given as such or as a rendered template string ("" and "None" mean unset)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}", hint=f"fix {name}") from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

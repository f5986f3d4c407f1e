"""embed(): read a source, skip what the sink already holds, pay once per text, write, record.

Order per batch, chosen for crash safety: validate → plan against the ledger
→ get vectors (reuse or provider) → write the sink → record provenance. The
sink is written before the ledger ("be pessimistic"): a crash between the two
leaves points the ledger does not know, which the next run simply rewrites
(same ids, same vectors) — never a ledger claiming a vector that is not there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Literal

from .errors import ConfigError, DimensionMismatchError
from .handles import ledger_for, sink_for
from .identity import vector_scheme
from .ledger import Ledger
from .migration_targets import followed, open_migration_targets
from .point_writes import PointWriter, RowPlan, rows_to_write
from .providers import EmbeddingProvider, get_provider
from .recorded import RunStart, recorded_run
from .records import EmbedRun
from .rows import OnDuplicate, OnInvalid, RowBatch, check_input
from .sinks.base import Distance, Sink
from .sources import open_source
from .spark import SparkOptions
from .verify import verify

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4096

Runner = Literal["auto", "local", "spark"]


def embed(
    df: Any = None,
    *,
    text_col: str,
    key_col: str,
    model: str,
    sink: str | Sink,
    source: str | None = None,
    shadow_mode: bool = False,
    dedup: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    dim: int | None = None,
    distance: Distance = "cosine",
    filter: str | None = None,
    store_text: bool = False,
    delete_missing: bool = False,
    dry_run: bool = False,
    on_invalid: OnInvalid = "error",
    on_duplicate: OnDuplicate = "error",
    repair: bool = False,
    provider: EmbeddingProvider | None = None,
    provider_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
    run_context: dict[str, Any] | None = None,
    spark: Any = None,
    progress: Callable[[EmbedRun], None] | None = None,
    runner: Runner = "auto",
    spark_options: SparkOptions | None = None,
) -> EmbedRun:
    """Embed the rows of a table into a vector sink and return what happened.

    :param df: a pyarrow Table/RecordBatchReader, pandas DataFrame, Spark
        DataFrame, or the path/URI of a Parquet file or Delta table.
    :param source: the source's stable name; required for in-memory frames
        because point ids derive from (source, key).
    :param batch_size: rows per pipeline batch (read, dedup, embed, write).
        A provider failure loses at most the batch in flight.
    :param delete_missing: after a full pass, delete points of this source
        whose keys were not seen (rows deleted from the source). Leave off
        when ``filter`` selects a subset.
    :param dry_run: plan only — count rows and texts to embed and estimate
        tokens and cost, calling neither provider nor sink writes.
    :param on_invalid: a row with a null or blank text: ``"error"`` fails the
        run before anything is written; ``"skip"`` leaves it out.
    :param on_duplicate: a key that appears more than once anywhere in the
        input: ``"error"`` fails the run before anything is written;
        ``"keep_last"`` keeps its last row (the others count as skipped).
    :param repair: first compare every point of the sink with the ledger
        (see verify.py) and make the ledger say what the sink holds, so this
        run rewrites every point that disagrees with the source.
    :param runner: ``"spark"``: a Spark source's rows are planned, embedded and written on the
        executors (each with its own provider client and sink connection; see
        :mod:`.spark.distributed_embed`); ``"local"``: every row passes through this process;
        ``"auto"``: spark for a Spark source whose sink every executor can open by URI
        (pgvector, Qdrant server), else local.
    :param spark_options: how the Spark runner ships the ledger's view and splits the work.
    """
    started = time.monotonic()
    given_provider = provider
    provider = provider or get_provider(
        model, shadow_mode=shadow_mode, dim=dim, options=provider_options, plan_only=dry_run
    )
    with ExitStack() as stack:
        sink_obj = sink_for(sink, stack, sink_options)
        ledger_obj = ledger_for(ledger, stack)
        src = stack.enter_context(
            open_source(
                df,
                source=source,
                key_col=key_col,
                text_col=text_col,
                filter=filter,
                batch_size=batch_size,
                spark=spark,
            )
        )
        run = EmbedRun(
            run_id="",
            model=provider.model,
            sink=sink_obj.uri,
            source=src.name,
            source_version=src.version,
            dry_run=dry_run,
        )
        check_dimension(sink_obj, provider.dim, create=not dry_run, distance=distance)
        plan = RowPlan(
            source=src.name,
            sink=sink_obj.uri,
            model=provider.model,
            ledger=ledger_obj,
            dedup=dedup,
            key_col=key_col,
            text_col=text_col,
            on_invalid=on_invalid,
        )
        if dry_run:
            return _plan(run, src, provider, ledger_obj, plan, started)
        on_spark = _use_spark(runner, src, sink)
        run.runner = "spark" if on_spark else "local"
        targets = open_migration_targets(sink_obj, ledger=ledger_obj)
        if targets and not _rereadable(df):
            log.warning(
                "%s has an open dual-write migration, but this source can be read only once: "
                "run migrate(..., action='sync') to bring the new collection up to date",
                sink_obj.uri,
            )
            targets = []
        ledger_obj.register_sink(
            sink_obj.uri, model=provider.model, dim=provider.dim, distance=distance,
            vector_scheme=vector_scheme(provider),
        )  # fmt: skip
        start = RunStart(
            kind="embed",
            model=provider.model,
            sink=sink_obj.uri,
            source=src.name,
            run_context=run_context,
            params={
                "text_col": text_col,
                "key_col": key_col,
                "filter": filter,
                "shadow_mode": shadow_mode,
                "source_version": src.version,
                "delete_missing": delete_missing,
            },
        )
        with recorded_run(ledger_obj, run, start, started=started):
            if on_spark:
                if repair:
                    report = verify(sink_obj, ledger_obj, fix=True)
                    log.info("repair of %s: %s", sink_obj.uri, report.to_dict())
                unseen = _embed_on_spark(
                    run, src, sink, sink_obj, ledger_obj, provider, spark_options,
                    shadow_mode=shadow_mode, dim=dim, provider_options=provider_options,
                    batch_size=batch_size, dedup=dedup, store_text=store_text, key_col=key_col,
                    text_col=text_col, on_invalid=on_invalid, on_duplicate=on_duplicate,
                    delete_missing=delete_missing, given_provider=given_provider,
                )  # fmt: skip
                for at in range(0, len(unseen), 5000):
                    _delete_points(run, unseen[at : at + 5000], sink_obj, ledger_obj)
            else:
                _embed_here(
                    run, src, plan, provider, sink_obj, ledger_obj, stack,
                    dedup=dedup, store_text=store_text, repair=repair, delete_missing=delete_missing,
                    key_col=key_col, text_col=text_col, on_invalid=on_invalid, on_duplicate=on_duplicate,
                    started=started, progress=progress,
                )  # fmt: skip
            sink_obj.flush()
        if run.cost_usd is None:
            log.warning("model %s has no known price: this run's cost is recorded as unknown", provider.model)
        for target in targets:
            # The same rows into each open dual-write migration's new collection, with its model.
            with sink_obj.with_collection(target.collection) as new_sink:
                done = embed(
                    df,
                    text_col=text_col,
                    key_col=key_col,
                    model=target.to_model,
                    sink=new_sink,
                    source=src.name,
                    shadow_mode=shadow_mode,
                    dedup=dedup,
                    batch_size=batch_size,
                    ledger=ledger_obj,
                    dim=target.dim,
                    distance=target.distance,
                    filter=filter,
                    store_text=store_text,
                    delete_missing=delete_missing,
                    on_invalid=on_invalid,
                    on_duplicate=on_duplicate,
                    provider_options=provider_options,
                    run_context=run_context,
                    spark=spark,
                )
            run.migration_runs.append(
                followed(target, kind="embed", run_id=done.run_id, n_embedded=done.n_embedded)
            )
        return run


def _embed_here(
    run: EmbedRun,
    src: Any,
    plan: RowPlan,
    provider: EmbeddingProvider,
    sink_obj: Sink,
    ledger_obj: Ledger,
    stack: ExitStack,
    *,
    dedup: bool,
    store_text: bool,
    repair: bool,
    delete_missing: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    on_duplicate: OnDuplicate,
    started: float,
    progress: Callable[[EmbedRun], None] | None,
) -> None:
    """The local runner: every row through this process, written on the writer's threads."""
    with PointWriter(
        run,
        source=src.name,
        provider=provider,
        sink=sink_obj,
        ledger=ledger_obj,
        reuse=dedup,
        store_text=store_text,
    ) as points:
        if repair:
            with points.writer.sink_lock:
                report = verify(sink_obj, ledger_obj, fix=True)
            log.info("repair of %s: %s", sink_obj.uri, report.to_dict())
        if delete_missing:
            ledger_obj.clear_seen()
        # The whole input is valid, or nothing is written (see rows.py).
        checked = check_input(
            src, key_col=key_col, text_col=text_col, on_invalid=on_invalid, on_duplicate=on_duplicate
        )
        stack.callback(checked.close)
        run.n_rows_processed += checked.n_duplicates
        run.n_skipped += checked.n_duplicates
        plan = plan.for_input(checked.n_rows)
        for batch in checked.batches():
            rows = plan.rows(batch)
            if delete_missing:
                ledger_obj.mark_seen(rows.ids)
            count_rows(run, rows)
            points.submit(rows_to_write(rows, version=src.version))
            run.duration_s = round(time.monotonic() - started, 3)
            if progress:
                progress(run)
    if delete_missing:
        _delete_unseen(run, src.name, sink_obj, ledger_obj)


def check_dimension(sink: Sink, dim: int, *, create: bool, distance: Distance) -> None:
    if create:
        sink.ensure_collection(dim, distance=distance)
        return
    existing = sink.dimension()
    if existing is not None and existing != dim:
        raise DimensionMismatchError(
            f"{sink.uri} holds {existing}-d vectors but the model gives {dim}-d",
            hint="write to another collection, or migrate the collection to the new model",
        )


def _delete_unseen(run: EmbedRun, source: str, sink: Sink, ledger: Ledger) -> None:
    for ids in ledger.unseen_points(sink.uri, source):
        _delete_points(run, ids, sink, ledger)
    ledger.clear_seen()


def _delete_points(run: EmbedRun, ids: list[str], sink: Sink, ledger: Ledger) -> None:
    ledger.mark_pending(sink.uri, ids, run_id=run.run_id)  # see writer.py: invalidate, then delete
    sink.delete(ids)
    ledger.record_deletes(sink.uri, ids, run_id=run.run_id, source_version=run.source_version)
    run.n_deleted += len(ids)


def _use_spark(runner: Runner, src: Any, sink: str | Sink) -> bool:
    """Whether the executors do the work (see ``runner`` in :func:`embed`)."""
    if runner not in ("auto", "local", "spark"):
        raise ConfigError(
            f"runner must be 'auto', 'local' or 'spark', got {runner!r}", hint="pass runner='spark'"
        )
    if runner == "local":
        return False
    from .spark import executor_sink_problem

    problem = executor_sink_problem(sink)
    if runner == "auto":
        return getattr(src, "kind", None) == "spark" and problem is None
    if getattr(src, "kind", None) != "spark":
        raise ConfigError(
            f"runner='spark' needs a Spark DataFrame or catalog table, not {src.describe()}",
            hint="pass a Spark DataFrame (spark.read.parquet(...)) or spark=<session> with a table name",
        )
    if problem is not None:
        raise ConfigError(
            f"runner='spark' cannot write {sink if isinstance(sink, str) else sink.uri}: {problem}",
            hint="write to a sink every executor can reach (pgvector://, qdrant://HOST), "
            "or use runner='local'",
        )
    return True


def _embed_on_spark(
    run: EmbedRun,
    src: Any,
    sink: str | Sink,
    sink_obj: Sink,
    ledger: Ledger,
    provider: EmbeddingProvider,
    spark_options: SparkOptions | None,
    *,
    given_provider: EmbeddingProvider | None,
    shadow_mode: bool,
    dim: int | None,
    provider_options: dict[str, Any] | None,
    **options: Any,
) -> list[str]:
    from .spark import embed_partitions
    from .spark.tasks import ProviderSpec

    spec = ProviderSpec(
        model=provider.model, shadow_mode=shadow_mode, dim=dim, options=dict(provider_options or {}),
        instance=given_provider,
    )  # fmt: skip
    return embed_partitions(
        run, src.frame, sink_uri=str(sink), sink=sink_obj, ledger=ledger, provider=spec, model=provider.model,
        dim=provider.dim, version=src.version, options=spark_options or SparkOptions(), **options,
    )  # fmt: skip


def count_rows(run: EmbedRun, rows: RowBatch) -> None:
    """Count a planned batch into the run: rows read, already current, and left out as invalid."""
    run.n_rows_processed += len(rows) + rows.n_skipped
    run.n_rows_deduped += rows.n_deduped
    run.n_skipped += rows.n_skipped


def _rereadable(df: Any) -> bool:
    """Whether the source can be read again (a one-shot stream of batches cannot)."""
    import pyarrow as pa

    return not isinstance(df, pa.RecordBatchReader)


def _plan(
    run: EmbedRun, src: Any, provider: EmbeddingProvider, ledger: Ledger, plan: RowPlan, started: float
) -> EmbedRun:
    """Count the work a real run would do; nothing is sent or written."""
    planned: set[bytes] = set()  # 16-byte hash prefixes: texts already counted in this plan
    run.run_id = "plan"
    run.status = "planned"
    for batch in src.batches():
        rows = plan.rows(batch)
        count_rows(run, rows)
        run.n_written += len(rows.todo)
        distinct = {rows.hashes[i]: rows.texts[i] for i in rows.todo}
        reusable = ledger.find_embedded(provider.model, list(distinct), sink=plan.sink) if plan.dedup else {}
        new = [t for h, t in distinct.items() if h not in reusable and bytes.fromhex(h[:32]) not in planned]
        planned.update(bytes.fromhex(h[:32]) for h in distinct if h not in reusable)
        run.n_reused += len(distinct) - len(new)
        run.n_embedded += len(new)
        run.tokens += provider.estimate_tokens(new)
    price = provider.price_per_million_tokens()
    run.cost_usd = None if price is None else round(run.tokens * price / 1e6, 8)
    run.duration_s = round(time.monotonic() - started, 3)
    return run

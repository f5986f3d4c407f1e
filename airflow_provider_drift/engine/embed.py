"""embed(): read a source, skip what the sink already holds, pay once per text, write, record.

Order per batch, chosen for crash safety: validate → plan against the ledger
→ get vectors (reuse or provider) → write the sink → record provenance. The
sink is written before the ledger ("be pessimistic"): a crash between the two
leaves points the ledger does not know, which the next run simply rewrites
(same ids, same vectors) — never a ledger claiming a vector that is not there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from .errors import DimensionMismatchError
from .handles import ledger_for, sink_for
from .ledger import Ledger, Upsert
from .providers import EmbeddingProvider, get_provider
from .records import EmbedRun
from .rows import OnInvalid, RowBatch, plan_rows
from .sinks.base import (
    PAYLOAD_HASH,
    PAYLOAD_KEY,
    PAYLOAD_MODEL,
    PAYLOAD_RUN,
    PAYLOAD_SOURCE,
    PAYLOAD_TEXT,
    PAYLOAD_VERSION,
    Distance,
    PointBatch,
    Sink,
)
from .sources import open_source
from .vectorize import Vectorized, add_cost, stack, vectorize
from .writer import BatchWriter, WriteJob

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4096


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
    provider: EmbeddingProvider | None = None,
    provider_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
    run_context: dict[str, Any] | None = None,
    spark: Any = None,
    progress: Callable[[EmbedRun], None] | None = None,
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
    """
    started = time.monotonic()
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
        if dry_run:
            return _plan(
                run, src, provider, sink_obj, ledger_obj, dedup, key_col, text_col, on_invalid, started
            )
        ledger_obj.register_sink(sink_obj.uri, model=provider.model, dim=provider.dim, distance=distance)
        run.run_id = ledger_obj.start_run(
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
        writer = BatchWriter(sink_obj, ledger_obj.path, on_written=lambda n: add_written(run, n))
        try:
            if delete_missing:
                ledger_obj.clear_seen()
            for batch in src.batches():
                rows = plan_rows(
                    batch.column("key").to_pylist(),
                    batch.column("text").to_pylist(),
                    source=src.name,
                    sink=sink_obj.uri,
                    model=provider.model,
                    ledger=ledger_obj,
                    dedup=dedup,
                    key_col=key_col,
                    text_col=text_col,
                    on_invalid=on_invalid,
                )
                if delete_missing:
                    ledger_obj.mark_seen(rows.ids)
                submit_batch(
                    run, rows, provider, sink_obj, ledger_obj, writer, reuse=dedup, store_text=store_text
                )
                run.duration_s = round(time.monotonic() - started, 3)
                if progress:
                    progress(run)
            writer.close()
            if delete_missing:
                _delete_unseen(run, src.name, sink_obj, ledger_obj)
            sink_obj.flush()
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                writer.close()  # what was paid for and queued still gets written and recorded
            run.status = "failed"
            run.duration_s = round(time.monotonic() - started, 3)
            ledger_obj.finish_run(run.run_id, run.to_dict(), status="failed", error=describe_error(exc))
            raise
        run.duration_s = round(time.monotonic() - started, 3)
        ledger_obj.finish_run(run.run_id, run.to_dict())
        if run.cost_usd is None:
            log.warning("model %s has no known price: this run's cost is recorded as unknown", provider.model)
        return run


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


_written_lock = threading.Lock()


def add_written(run: EmbedRun, n: int) -> None:
    with _written_lock:
        run.n_written += n


def submit_batch(
    run: EmbedRun,
    rows: RowBatch,
    provider: EmbeddingProvider,
    sink: Sink,
    ledger: Ledger,
    writer: BatchWriter,
    *,
    reuse: bool,
    store_text: bool,
) -> None:
    """Get vectors for the rows that need work and hand them to the writer."""
    run.n_rows_processed += len(rows.ids) + rows.n_skipped
    run.n_rows_deduped += rows.n_deduped
    run.n_skipped += rows.n_skipped
    if not rows.todo:
        return
    texts_by_hash = {rows.hashes[i]: rows.texts[i] for i in rows.todo}
    try:
        got = vectorize(
            texts_by_hash,
            provider=provider,
            sink=sink,
            ledger=ledger,
            reuse=reuse,
            pending=writer.pending,
            sink_lock=writer.sink_lock,
        )
    except Exception as exc:
        partial: Vectorized | None = getattr(exc, "vectorized", None)
        if partial is not None:  # keep what was paid for: write the rows that have vectors
            have = [i for i in rows.todo if rows.hashes[i] in partial.by_hash]
            done = RowBatch(rows.keys, rows.texts, rows.ids, rows.hashes, have)
            _submit_vectors(run, done, partial, provider, writer, store_text=store_text)
        raise
    _submit_vectors(run, rows, got, provider, writer, store_text=store_text)


def _submit_vectors(
    run: EmbedRun,
    rows: RowBatch,
    got: Vectorized,
    provider: EmbeddingProvider,
    writer: BatchWriter,
    *,
    store_text: bool,
) -> None:
    run.n_embedded += got.n_embedded
    run.n_reused += got.n_reused
    run.tokens += got.tokens
    run.cost_usd = add_cost(run.cost_usd, got.cost_usd)
    if not rows.todo:
        return
    payloads = []
    for i in rows.todo:
        payload = {
            PAYLOAD_KEY: rows.keys[i],
            PAYLOAD_SOURCE: run.source,
            PAYLOAD_HASH: rows.hashes[i],
            PAYLOAD_MODEL: provider.model,
            PAYLOAD_RUN: run.run_id,
            PAYLOAD_VERSION: run.source_version,
        }
        if store_text:
            payload[PAYLOAD_TEXT] = rows.texts[i]
        payloads.append(payload)
    embedded_now = {h: v for h, v in got.by_hash.items() if h in got.embedded}
    writer.submit(
        WriteJob(
            points=PointBatch(
                ids=[rows.ids[i] for i in rows.todo],
                vectors=stack([got.by_hash[rows.hashes[i]] for i in rows.todo], provider.dim),
                payloads=payloads,
            ),
            provenance=[
                Upsert(rows.ids[i], run.source, rows.keys[i], rows.hashes[i], run.source_version)
                for i in rows.todo
            ],
            model=provider.model,
            run_id=run.run_id,
            new_vectors=embedded_now,
        )
    )


def _delete_unseen(run: EmbedRun, source: str, sink: Sink, ledger: Ledger) -> None:
    for ids in ledger.unseen_points(sink.uri, source):
        sink.delete(ids)
        ledger.record_deletes(sink.uri, ids, run_id=run.run_id, source_version=run.source_version)
        run.n_deleted += len(ids)
    ledger.clear_seen()


def _plan(
    run: EmbedRun,
    src: Any,
    provider: EmbeddingProvider,
    sink: Sink,
    ledger: Ledger,
    dedup: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    started: float,
) -> EmbedRun:
    """Count the work a real run would do; nothing is sent or written."""
    planned: set[bytes] = set()  # 16-byte hash prefixes: texts already counted in this plan
    run.run_id = "plan"
    run.status = "planned"
    for batch in src.batches():
        rows = plan_rows(
            batch.column("key").to_pylist(),
            batch.column("text").to_pylist(),
            source=src.name,
            sink=sink.uri,
            model=provider.model,
            ledger=ledger,
            dedup=dedup,
            key_col=key_col,
            text_col=text_col,
            on_invalid=on_invalid,
        )
        run.n_rows_processed += len(rows.ids) + rows.n_skipped
        run.n_rows_deduped += rows.n_deduped
        run.n_skipped += rows.n_skipped
        run.n_written += len(rows.todo)
        distinct = {rows.hashes[i]: rows.texts[i] for i in rows.todo}
        reusable = ledger.find_embedded(provider.model, list(distinct), sink=sink.uri) if dedup else {}
        new = [t for h, t in distinct.items() if h not in reusable and bytes.fromhex(h[:32]) not in planned]
        planned.update(bytes.fromhex(h[:32]) for h in distinct if h not in reusable)
        run.n_reused += len(distinct) - len(new)
        run.n_embedded += len(new)
        run.tokens += provider.estimate_tokens(new)
    price = provider.price_per_million_tokens()
    run.cost_usd = None if price is None else round(run.tokens * price / 1e6, 8)
    run.duration_s = round(time.monotonic() - started, 3)
    return run


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]

"""Embed through the OpenAI Batch API: submit now, write when the batch is done (half the price).

Two calls with nothing but a small :class:`BatchEmbedJob` between them, so an
Airflow operator can submit, defer to a trigger that polls, and complete in
another process:

* :func:`submit_embed` plans the rows exactly as :func:`~.embed.embed` does
  (point id = (source, key), the content hash decides the work, identical
  texts once, texts the sink already holds under this model are reused),
  uploads the distinct texts that need the provider — in several batches when
  there are more than ``MAX_TEXTS_PER_BATCH`` — and opens a ledger run
  (status ``running``). Nothing is written to the sink.
* :func:`complete_embed` fetches the results, re-reads the source (a Delta
  table at the version submitted, so the rows are the same) and writes the
  rows through embed's own writer path; the run's cost is the batches' token
  usage × the discounted price.

The job record and its manifest (which batch position holds which text) are
described in :mod:`.batch_job`; the manifest and the provider's batch files
are deleted once the results are written.

Rows whose text has no batch result — the source changed after submission
(Parquet, in-memory data), or a vector counted as reusable has left the sink
— are embedded synchronously at the full price, with a warning, so a
completed job always leaves the sink equal to the source. Texts whose batch
lines failed or expired are *not* resubmitted: the rows with results are
written and recorded, then the run fails with :class:`ProviderError`; a
re-run submits (and pays for) only the missing texts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import numpy as np

from .batch_job import BatchEmbedJob, find_open_job, manifest_path, read_manifest, write_manifest
from .embed import DEFAULT_BATCH_SIZE, check_dimension, count_rows, embed
from .errors import ConfigError, ProviderError, TerminalProviderError
from .handles import ledger_for, sink_for
from .identity import content_hashes, vector_scheme
from .ledger import Ledger
from .models import BATCH_DISCOUNT, split_model
from .point_writes import PointWriter, RowPlan, rows_to_write
from .providers.base import EmbeddingProvider, Embeddings
from .providers.openai_batch import OpenAIBatchEmbedder
from .recorded import RunStart, close_failed, recorded_run
from .records import EmbedRun
from .rows import OnInvalid, check_input
from .sinks.base import Distance, Sink
from .sources import Source, open_source
from .vectorize import add_cost, stack

log = logging.getLogger(__name__)

_META_VALUE_MAX = 512  # OpenAI's limit on a metadata value


def submit_embed(
    df: Any = None,
    *,
    text_col: str,
    key_col: str,
    model: str,
    sink: str | Sink,
    source: str | None = None,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    filter: str | None = None,
    provider_options: dict[str, Any] | None = None,
    dim: int | None = None,
    distance: Distance = "cosine",
    dedup: bool = True,
    store_text: bool = False,
    on_invalid: OnInvalid = "error",
    batch_size: int = DEFAULT_BATCH_SIZE,
    sink_options: dict[str, Any] | None = None,
    run_context: dict[str, Any] | None = None,
    spark: Any = None,
    embedder: OpenAIBatchEmbedder | None = None,
    resume_key: str | None = None,
) -> BatchEmbedJob:
    """Plan the rows, submit the texts that need the provider, and return the job to complete later.

    Takes :func:`~.embed.embed`'s arguments (``delete_missing`` and
    ``dry_run`` excepted: see :func:`plan_batch_embed`). A job without
    ``batch_ids`` had nothing to send: complete it at once.

    :param resume_key: identifies the submitter, e.g. an Airflow task instance. If a job submitted
        under this key is still open (fully submitted, not completed), it is returned instead of
        submitting again — a task retried after its batches finished must not pay for them twice.
    """
    _require_openai(model)
    resumed = open_job(ledger, resume_key) if resume_key is not None else None
    if resumed is not None:
        log.info("resuming batch job of run %s (batches %s)", resumed.run_id, ", ".join(resumed.batch_ids))
        return resumed
    with ExitStack() as stack:
        own_embedder = embedder is None
        embedder = embedder or stack.enter_context(
            closing(OpenAIBatchEmbedder(model, dim=dim, **(provider_options or {})))
        )
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
        job = BatchEmbedJob(
            run_id="",
            model=embedder.model,
            sink=sink_obj.uri,
            source=src.name,
            source_version=src.version,
            location=_location(df, source),
            source_kind=src.kind,
            text_col=text_col,
            key_col=key_col,
            filter=filter,
            dim=dim if dim is not None or own_embedder else embedder.dim,  # complete builds the same one
            distance=distance,
            dedup=dedup,
            store_text=store_text,
            on_invalid=on_invalid,
            batch_size=batch_size,
            resume_key=resume_key,
        )
        check_dimension(sink_obj, embedder.dim, create=False, distance=distance)
        start = RunStart(
            kind="embed",
            model=embedder.model,
            sink=sink_obj.uri,
            source=src.name,
            run_context=run_context,
            params={
                "text_col": text_col,
                "key_col": key_col,
                "filter": filter,
                "source_version": src.version,
                "batch_api": True,
            },
        )
        record = EmbedRun("", job.model, job.sink, job.source, job.source_version)
        # The run stays open (``running``) until complete_embed writes the results.
        with recorded_run(ledger_obj, record, start, leave_open=True):
            job.run_id = record.run_id
            job.manifest = str(manifest_path(ledger_obj, job.run_id))
            try:
                _submit_texts(job, src, embedder, sink_obj, ledger_obj)
            except BaseException:
                cancel_batches(embedder, job.batch_ids)  # nothing will fetch them: stop them billing
                with contextlib.suppress(OSError):
                    Path(job.manifest).unlink(missing_ok=True)
                raise
        price = embedder.price_per_million_tokens()
        job.estimated_cost_usd = None if price is None else round(job.estimated_tokens * price / 1e6, 8)
        if job.batch_ids:
            write_manifest(Path(job.manifest), job, read_manifest(job), submitted=True)
        log.info(
            "submitted %d texts in %d batch(es) for %d rows (%d reusable texts); ~%d tokens",
            job.n_texts_submitted, len(job.batch_ids), job.n_rows_todo, job.n_texts_reusable,
            job.estimated_tokens,
        )  # fmt: skip
        return job


def complete_embed(
    job: BatchEmbedJob | dict[str, Any],
    df: Any = None,
    *,
    sink: str | Sink | None = None,
    sink_options: dict[str, Any] | None = None,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    provider_options: dict[str, Any] | None = None,
    spark: Any = None,
    embedder: OpenAIBatchEmbedder | None = None,
) -> EmbedRun:
    """Fetch the finished batches, write every planned row, record cost and provenance; return the run.

    ``df`` is needed only when the job was submitted from in-memory data;
    ``sink``/``sink_options`` only when the sink needs credentials the job
    does not carry. Safe to call again after a failed write: the manifest and
    the provider's files are kept until the results are written. Every vector
    the batches returned is held in memory while the rows are written
    (texts × dim × 4 bytes: 50,000 texts of 1,536 floats ≈ 300 MB).
    """
    job = job if isinstance(job, BatchEmbedJob) else BatchEmbedJob.from_dict(job)
    started = time.monotonic()
    with ExitStack() as stack:
        embedder = embedder or stack.enter_context(
            closing(OpenAIBatchEmbedder(job.model, dim=job.dim, **(provider_options or {})))
        )
        sink_obj = sink_for(sink or job.sink, stack, sink_options)
        ledger_obj = ledger_for(ledger, stack)
        run = EmbedRun(job.run_id, job.model, sink_obj.uri, job.source, job.source_version)
        missing: dict[str, str] = {}
        with recorded_run(ledger_obj, run, None, started=started):
            src = stack.enter_context(_reopen(job, df, spark))
            served = _fetch_all(embedder, read_manifest(job), run, missing)
            check_dimension(sink_obj, embedder.dim, create=True, distance=job.distance)  # type: ignore[arg-type]
            ledger_obj.register_sink(
                sink_obj.uri, model=job.model, dim=embedder.dim, distance=job.distance,
                vector_scheme=vector_scheme(embedder),
            )  # fmt: skip
            n_sync, n_rows_missing = _write_rows(
                job, run, src, _BatchResults(served, like=embedder.provider), embedder.provider,
                sink_obj, ledger_obj, missing,
            )  # fmt: skip
            sink_obj.flush()
            _clean_up(job, embedder)
            if missing:
                raise _missing_error(job, missing, n_rows_missing)
        if n_sync:
            log.warning(
                "%d text(s) had no batch result (the source changed after submission, or a reused vector "
                "left the sink) and were embedded synchronously at the full price",
                n_sync,
            )
        if run.cost_usd is None:
            log.warning("model %s has no known price: this run's cost is recorded as unknown", job.model)
        return run


def plan_batch_embed(df: Any = None, **embed_kwargs: Any) -> EmbedRun:
    """A dry run priced at the Batch API's discount: what :func:`submit_embed` would send and cost."""
    _require_openai(str(embed_kwargs.get("model")))
    run = embed(df, dry_run=True, **embed_kwargs)
    if run.cost_usd is not None:
        run.cost_usd = round(run.cost_usd * BATCH_DISCOUNT, 8)
    return run


def cancel_batches(embedder: OpenAIBatchEmbedder, batch_ids: Sequence[str]) -> list[str]:
    """Cancel batches at the provider, best effort; return the ids a cancel was accepted for.

    A batch that already finished cannot be cancelled and is left as is.
    """
    cancelled = []
    for batch_id in batch_ids:
        try:
            embedder.cancel(batch_id)
        except Exception as exc:
            log.warning("could not cancel batch %s: %s", batch_id, exc)
            continue
        cancelled.append(batch_id)
    return cancelled


def abandon_job(
    job: BatchEmbedJob | dict[str, Any],
    *,
    reason: str,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    provider_options: dict[str, Any] | None = None,
    embedder: OpenAIBatchEmbedder | None = None,
) -> list[str]:
    """Give up a submitted job: cancel its batches, forget its manifest, close its run as failed.

    For a job nothing will complete — its task timed out or was killed — so
    its batches stop running (and billing) and a retry submits afresh instead
    of resuming it. Rows are not written; texts a batch had already embedded
    are paid again by the re-run. Returns the ids of the batches cancelled.
    """
    job = job if isinstance(job, BatchEmbedJob) else BatchEmbedJob.from_dict(job)
    with ExitStack() as stack:
        embedder = embedder or stack.enter_context(
            closing(OpenAIBatchEmbedder(job.model, dim=job.dim, **(provider_options or {})))
        )
        cancelled = cancel_batches(embedder, job.batch_ids)
        if job.manifest:
            with contextlib.suppress(OSError):
                Path(job.manifest).unlink(missing_ok=True)
        record = EmbedRun(job.run_id, job.model, job.sink, job.source, job.source_version)
        close_failed(ledger_for(ledger, stack), record, reason)
        return cancelled


def open_job(
    ledger: Ledger | str | os.PathLike[str] | None, resume_key: str, *, submitted: bool = True
) -> BatchEmbedJob | None:
    """The job submitted under ``resume_key`` whose results are not written yet, if any.

    ``submitted=False`` also finds one whose submission was cut short.
    """
    with ExitStack() as stack:
        return find_open_job(ledger_for(ledger, stack), resume_key, submitted=submitted)


# -- submit -----------------------------------------------------------------------------------------


def _submit_texts(
    job: BatchEmbedJob, src: Source, embedder: OpenAIBatchEmbedder, sink: Sink, ledger: Ledger
) -> None:
    """Plan every batch of rows and submit each distinct new text once, a full batch at a time."""
    chunk: dict[str, str] = {}  # content hash → text, waiting to be submitted
    counted: set[bytes] = set()  # 16-byte hash prefixes already submitted or counted as reusable
    manifest: dict[str, list[str]] = {}
    meta = {"drift_run_id": job.run_id, "drift_source": job.source[-_META_VALUE_MAX:]}
    plan = _plan(job, sink, ledger)
    # The whole input is valid (unique keys, see rows.py) before a text is paid for.
    with closing(
        check_input(src, key_col=job.key_col, text_col=job.text_col, on_invalid=job.on_invalid)  # type: ignore[arg-type]
    ) as checked:
        for batch in checked.batches():
            rows = plan.rows(batch)
            job.n_rows += len(rows) + rows.n_skipped
            job.n_rows_todo += len(rows.todo)
            distinct = {rows.hashes[i]: rows.texts[i] for i in rows.todo}
            new = {h: t for h, t in distinct.items() if bytes.fromhex(h[:32]) not in counted}
            reusable = ledger.find_embedded(job.model, list(new), sink=sink.uri) if job.dedup and new else {}
            counted.update(bytes.fromhex(h[:32]) for h in new)
            job.n_texts_reusable += len(reusable)
            for h, text in new.items():
                if h in reusable:
                    continue
                chunk[h] = text
                if len(chunk) >= embedder.max_texts_per_batch:
                    _submit_chunk(job, embedder, chunk, manifest, meta)
    if chunk:
        _submit_chunk(job, embedder, chunk, manifest, meta)


def _submit_chunk(
    job: BatchEmbedJob,
    embedder: OpenAIBatchEmbedder,
    chunk: dict[str, str],
    manifest: dict[str, list[str]],
    meta: dict[str, str],
) -> None:
    texts = list(chunk.values())
    batch_id = embedder.submit(texts, metadata=meta)
    job.batch_ids.append(batch_id)
    manifest[batch_id] = list(chunk)
    write_manifest(Path(str(job.manifest)), job, manifest)
    job.n_texts_submitted += len(texts)
    job.estimated_tokens += embedder.estimate_tokens(texts)
    chunk.clear()


# -- complete ---------------------------------------------------------------------------------------


def _fetch_all(
    embedder: OpenAIBatchEmbedder, manifest: dict[str, list[str]], run: EmbedRun, missing: dict[str, str]
) -> dict[str, np.ndarray]:
    """Content hash → vector for every text a batch returned; the rest go to ``missing`` with a reason."""
    served: dict[str, np.ndarray] = {}
    for batch_id, hashes in manifest.items():
        try:
            result = embedder.fetch(batch_id)
        except TerminalProviderError as exc:  # the whole batch failed (not billed): every text is missing
            missing.update(dict.fromkeys(hashes, exc.message))
            continue
        if result.total != len(hashes):
            raise ProviderError(
                f"batch {batch_id} holds {result.total} texts but its manifest lists {len(hashes)}",
                hint="the manifest does not belong to this batch: re-run the embed",
            )
        for k, pos in enumerate(result.positions):
            served[hashes[pos]] = result.embeddings.vectors[k]
        missing.update({hashes[pos]: reason for pos, reason in result.failed.items()})
        run.tokens += result.embeddings.tokens
        run.cost_usd = add_cost(run.cost_usd, result.embeddings.cost_usd)
    return served


def _write_rows(
    job: BatchEmbedJob,
    run: EmbedRun,
    src: Source,
    served: _BatchResults,
    provider: EmbeddingProvider,
    sink: Sink,
    ledger: Ledger,
    missing: dict[str, str],
) -> tuple[int, int]:
    """Re-plan the rows and write them through the shared writer; rows of missing texts are left out.

    Rows whose text a batch returned are written from the batch; the rest (the
    source changed, or a reused vector left the sink) go to the synchronous
    ``provider``. Returns (texts embedded synchronously, rows left out as missing).
    """
    n_sync = n_rows_missing = 0
    plan = _plan(job, sink, ledger)
    with PointWriter(
        run,
        source=job.source,
        provider=provider,
        sink=sink,
        ledger=ledger,
        reuse=job.dedup,
        store_text=job.store_text,
    ) as points:
        for batch in src.batches():
            rows = plan.rows(batch)
            count_rows(run, rows)
            todo = [i for i in rows.todo if rows.hashes[i] not in missing]
            n_rows_missing += len(rows.todo) - len(todo)
            from_batch = [i for i in todo if rows.hashes[i] in served.vectors]
            rest = [i for i in todo if rows.hashes[i] not in served.vectors]
            points.submit(rows_to_write(rows, version=job.source_version, todo=from_batch), provider=served)
            n_sync += points.submit(rows_to_write(rows, version=job.source_version, todo=rest)).n_embedded
    return n_sync, n_rows_missing


class _BatchResults(EmbeddingProvider):
    """Serves the vectors the batches returned, as a provider, for texts it is known to hold.

    Its answers cost nothing here: the batches' usage was added to the run
    once, when they were fetched.
    """

    def __init__(self, vectors: dict[str, np.ndarray], *, like: EmbeddingProvider) -> None:
        self.model = like.model
        self.dim = like.dim
        self.vectors = vectors

    def embed(self, texts: Sequence[str]) -> Embeddings:
        hashes = content_hashes(list(texts))
        return Embeddings(stack([self.vectors[h] for h in hashes], self.dim), 0, 0.0)

    def price_per_million_tokens(self) -> float | None:
        return 0.0


def _plan(job: BatchEmbedJob, sink: Sink, ledger: Ledger) -> RowPlan:
    return RowPlan(
        source=job.source,
        sink=sink.uri,
        model=job.model,
        ledger=ledger,
        dedup=job.dedup,
        key_col=job.key_col,
        text_col=job.text_col,
        on_invalid=job.on_invalid,  # type: ignore[arg-type]
    )


def _reopen(job: BatchEmbedJob, df: Any, spark: Any) -> Source:
    """The rows as submitted: a Delta table at the submitted version, else the source as it is now."""
    if df is None and job.location is None:
        raise ConfigError(
            f"job {job.run_id} was submitted from in-memory data ({job.source!r})",
            hint="pass the same data again: complete_embed(job, df)",
        )
    pinned = job.source_version if job.source_kind == "delta" else None
    src = open_source(
        df if df is not None else job.location,
        source=job.source,
        key_col=job.key_col,
        text_col=job.text_col,
        filter=job.filter,
        batch_size=job.batch_size,
        spark=spark,
        version=pinned,
    )
    if src.name != job.source:
        raise ConfigError(f"the data given is source {src.name!r}, but the job embedded {job.source!r}")
    return src


def _clean_up(job: BatchEmbedJob, embedder: OpenAIBatchEmbedder) -> None:
    """Delete the provider's files and the manifest: the results are in the sink now (best effort)."""
    for batch_id in job.batch_ids:
        try:
            embedder.delete_files(batch_id)
        except Exception as exc:
            log.warning("could not delete the files of batch %s: %s", batch_id, exc)
    if job.manifest:
        with contextlib.suppress(OSError):
            Path(job.manifest).unlink(missing_ok=True)


def _missing_error(job: BatchEmbedJob, missing: dict[str, str], n_rows_missing: int) -> ProviderError:
    reasons = sorted(set(missing.values()))
    return ProviderError(
        f"{len(missing)} text(s) of batch(es) {', '.join(job.batch_ids)} have no vector "
        f"({'; '.join(reasons[:3])}); {n_rows_missing} row(s) were not written",
        hint="the rows with vectors are written and recorded: re-run the embed, which submits "
        "(and pays for) only the missing texts",
        n_missing=len(missing),
        n_rows_missing=n_rows_missing,
    )


def _location(df: Any, source: str | None) -> str | None:
    if df is None:
        return source
    if isinstance(df, (str, os.PathLike)):
        return os.fspath(df)
    if hasattr(df, "table_uri") and type(df).__module__.startswith("deltalake"):
        return str(df.table_uri)
    return None


def _require_openai(model: str) -> None:
    if split_model(model)[0] != "openai":
        raise ConfigError(
            f"the Batch API path serves openai/<model>, not {model!r}",
            hint="use an openai/... model, or embed synchronously (batch_api=False)",
        )

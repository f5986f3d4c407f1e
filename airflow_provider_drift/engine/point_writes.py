"""The write side every pipeline shares: rows that need a vector → vectors → points + provenance → writer.

embed, watch and the Batch API path differ in how they find the rows that
need work (a table scan, a change feed, a submitted job); from there on they
do the same thing, here, once: get the vectors (reuse what the sink holds,
else pay the provider), build the points' payloads and the ledger's
provenance rows, and hand both to the :class:`~.writer.BatchWriter` (sink
first, then ledger).

A provider that fails part-way does not lose what it was paid for: the rows
whose texts got a vector are written and recorded, then the provider's error
is raised — the re-run pays only for the rest.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .known_points import VIEW_POINTS_PER_ROW, KnownPoints
from .ledger import Ledger, Upsert
from .providers.base import EmbeddingProvider
from .rows import OnInvalid, RowBatch, plan_rows
from .sinks.base import (
    PAYLOAD_HASH,
    PAYLOAD_KEY,
    PAYLOAD_MODEL,
    PAYLOAD_RUN,
    PAYLOAD_SOURCE,
    PAYLOAD_TEXT,
    PAYLOAD_VERSION,
    PointBatch,
    Sink,
)
from .vectorize import Vectorized, add_cost, stack, vectorize
from .writer import BatchWriter, WriteJob


class WriteCounts(Protocol):
    """The counters of a run record (EmbedRun, WatchRun) that writing moves."""

    run_id: str
    n_embedded: int
    n_reused: int
    n_written: int
    tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class PointRows:
    """Rows that need a vector written: one per point, in the order given.

    ``versions`` is the source version each row reflects (one for all rows of
    a snapshot, per row for a change feed; None for unversioned sources).
    """

    ids: Sequence[str]
    keys: Sequence[str]
    texts: Sequence[str]
    hashes: Sequence[str]
    versions: Sequence[int | None]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int]) -> PointRows:
        return PointRows(
            [self.ids[i] for i in positions],
            [self.keys[i] for i in positions],
            [self.texts[i] for i in positions],
            [self.hashes[i] for i in positions],
            [self.versions[i] for i in positions],
        )


@dataclass(frozen=True)
class RowPlan:
    """How one run plans its source batches (see :func:`.rows.plan_rows`): the same for every batch."""

    source: str
    sink: str
    model: str
    ledger: Ledger
    dedup: bool
    key_col: str
    text_col: str
    on_invalid: OnInvalid
    current: KnownPoints | None = None

    def for_input(self, n_rows: int) -> RowPlan:
        """This plan with the sink's current points read up front, when ``n_rows`` input rows make
        that cheaper than asking the ledger batch by batch (see known_points.py)."""
        if not self.dedup or not n_rows:
            return self
        current = KnownPoints.read(
            self.ledger,
            sink=self.sink,
            source=self.source,
            model=self.model,
            limit=n_rows * VIEW_POINTS_PER_ROW,
        )
        return self if current is None else replace(self, current=current)

    def rows(self, batch: Any) -> RowBatch:
        """Validate a source batch (``key``/``text`` columns) and mark what needs a vector."""
        return plan_rows(
            batch.column("key"),
            batch.column("text"),
            source=self.source,
            sink=self.sink,
            model=self.model,
            ledger=self.ledger,
            dedup=self.dedup,
            key_col=self.key_col,
            text_col=self.text_col,
            on_invalid=self.on_invalid,
            current=self.current,
        )


def rows_to_write(rows: RowBatch, *, version: int | None, todo: Sequence[int] | None = None) -> PointRows:
    """The planned rows that need a vector (``todo``, default ``rows.todo``), all at source ``version``."""
    picked = rows.todo if todo is None else todo
    ids, keys, texts, hashes = rows.select(picked)
    return PointRows(ids, keys, texts, hashes, [version] * len(picked))


def build_write_job(
    rows: PointRows,
    got: Vectorized,
    *,
    source: str,
    model: str,
    dim: int,
    run_id: str,
    store_text: bool,
) -> WriteJob:
    """The points (payloads, ids, vectors) and provenance rows of ``rows``: every pipeline's one format."""
    payloads: list[dict[str, Any]] = []
    columns = (rows.keys, rows.texts, rows.hashes, rows.versions)
    for key, text, content_hash, version in zip(*columns, strict=True):
        payload: dict[str, Any] = {
            PAYLOAD_KEY: key,
            PAYLOAD_SOURCE: source,
            PAYLOAD_HASH: content_hash,
            PAYLOAD_MODEL: model,
            PAYLOAD_RUN: run_id,
            PAYLOAD_VERSION: version,
        }
        if store_text:
            payload[PAYLOAD_TEXT] = text
        payloads.append(payload)
    return WriteJob(
        points=PointBatch(
            ids=list(rows.ids),
            vectors=stack([got.by_hash[h] for h in rows.hashes], dim),
            payloads=payloads,
        ),
        provenance=[
            Upsert(pid, source, key, content_hash, version)
            for pid, key, content_hash, version in zip(
                rows.ids, rows.keys, rows.hashes, rows.versions, strict=True
            )
        ],
        model=model,
        run_id=run_id,
        new_vectors={h: v for h, v in got.by_hash.items() if h in got.embedded},
    )


class PointWriter:
    """Vectorize rows and write them through one :class:`BatchWriter`, counting into a run record.

    Use as a context manager: leaving it waits for every submitted batch to be
    written and recorded — also when the block failed, so what was paid for and
    queued is kept — and raises the writer's first error.
    """

    def __init__(
        self,
        record: WriteCounts,
        *,
        source: str,
        provider: EmbeddingProvider,
        sink: Sink,
        ledger: Ledger,
        reuse: bool,
        store_text: bool,
    ) -> None:
        self.record = record
        self.source = source
        self.provider = provider
        self.sink = sink
        self.ledger = ledger
        self.reuse = reuse
        self.store_text = store_text
        self._lock = threading.Lock()
        self.writer = BatchWriter(sink, ledger.location, on_written=self._add_written)

    def __enter__(self) -> PointWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.writer.close()
            return
        with contextlib.suppress(BaseException):  # the block's own error is the one to raise
            self.writer.close()  # what was paid for and queued still gets written and recorded

    def submit(self, rows: PointRows, *, provider: EmbeddingProvider | None = None) -> Vectorized:
        """Get each row's vector and queue the rows; on a provider error queue those with one, then raise.

        :param provider: embed with this one instead (same model and dimension), e.g. one
            serving vectors a Batch API job already returned.
        """
        if not len(rows):
            return Vectorized()
        provider = provider or self.provider
        got = vectorize(
            dict(zip(rows.hashes, rows.texts, strict=True)),
            provider=provider,
            sink=self.sink,
            ledger=self.ledger,
            reuse=self.reuse,
            pending=self.writer.pending,
            sink_lock=self.writer.sink_lock,
        )
        rec = self.record
        rec.n_embedded += got.n_embedded
        rec.n_reused += got.n_reused
        rec.tokens += got.tokens
        rec.cost_usd = add_cost(rec.cost_usd, got.cost_usd)
        if got.error is not None:
            rows = rows.take([i for i, h in enumerate(rows.hashes) if h in got.by_hash])
        if len(rows):
            self.writer.submit(
                build_write_job(
                    rows,
                    got,
                    source=self.source,
                    model=self.provider.model,
                    dim=self.provider.dim,
                    run_id=rec.run_id,
                    store_text=self.store_text,
                )
            )
        if got.error is not None:
            raise got.error
        return got

    def _add_written(self, n: int) -> None:
        with self._lock:
            self.record.n_written += n

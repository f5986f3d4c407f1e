"""What runs on the executors: plan rows, then embed and write them, one partition per task.

Each function here is handed to ``mapInArrow`` with a frozen spec, so it is
pickled to the executors and must not touch the driver's ledger. They use
the single-process pipeline's own pieces — :func:`..identity.point_id_digests`,
:func:`..rows.blank_texts`, :func:`..vectorize.vectorize`,
:func:`..point_writes.build_write_job` — so ids, hashes, dedup and cost are
the same whichever runner does the work.

Retries and speculative copies (why writing is idempotent): point ids are
derived from (source, key), so a second attempt writes the same points with
the same vectors. Before embedding a batch, a task asks the sink which of its
points already hold the row's text under this model (payload hash and model,
the same test :func:`..vectorize.vectorize` applies before reusing a vector):
those are not written or paid again, and their vectors serve the rest of the
partition. So a retried task pays only for the texts its failed attempt did
not get to write; their tokens, paid by the lost attempt, are counted again
from the provider's own estimate (the lost attempt's report never reached the
driver). Provenance comes back only in a task's result, which Spark keeps for
one attempt per partition; the driver also keeps one attempt per partition id.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DriftError, TerminalError
from ..identity import content_digests, format_point_ids, hex_hashes, point_id_digests
from ..known_points import KnownPoints, hash_prefixes
from ..ledger import Upsert
from ..point_writes import PointRows, build_write_job
from ..providers import EmbeddingProvider, get_provider
from ..rows import blank_texts
from ..sinks import open_sink
from ..sinks.base import PAYLOAD_HASH, PAYLOAD_MODEL, PAYLOAD_RUN, Sink
from ..sources.base import key_strings
from ..vectorize import add_cost, vectorize
from .known import fixed16
from .known import states as known_states
from .remote_errors import RemoteError, encode

#: rows of the plan step: every input row, with what validation and the ledger say about it
PLAN_SCHEMA = pa.schema(
    [
        pa.field("pid", pa.string()),
        pa.field("pid16", pa.binary()),
        pa.field("key", pa.string()),
        pa.field("text", pa.string()),
        pa.field("hash", pa.string()),
        pa.field("hash16", pa.binary()),
        pa.field("null_key", pa.bool_()),
        pa.field("blank", pa.bool_()),
        pa.field("ord", pa.int64()),
        pa.field("state", pa.string()),
    ]
)

#: rows a write task returns: one per batch (counts and its provenance as Arrow IPC), or an error
REPORT_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32()),
        pa.field("attempt", pa.int32()),
        pa.field("n_embedded", pa.int64()),
        pa.field("n_reused", pa.int64()),
        pa.field("n_recovered", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),  # null: unknown price
        pa.field("provenance", pa.binary()),
        pa.field("error", pa.string()),
    ]
)

PROVENANCE_SCHEMA = pa.schema(
    [
        pa.field("pid", pa.string()),
        pa.field("key", pa.string()),
        pa.field("hash", pa.string()),
        pa.field("version", pa.int64()),
    ]
)


@dataclass(frozen=True)
class ProviderSpec:
    """How an executor builds its own provider (and client): never a live client shipped over the wire."""

    model: str
    shadow_mode: bool = False
    dim: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: a caller's own provider object, pickled as it is (tests, custom providers)
    instance: EmbeddingProvider | None = None

    def build(self) -> EmbeddingProvider:
        if self.instance is not None:
            return self.instance
        return get_provider(self.model, shadow_mode=self.shadow_mode, dim=self.dim, options=self.options)


@dataclass(frozen=True)
class PlanSpec:
    source: str
    #: known points shipped in the closure/broadcast; None when the driver joins instead
    known: KnownPoints | None = None
    broadcast: Any = None  # a Spark broadcast variable holding a KnownPoints (classic Spark only)


@dataclass(frozen=True)
class WriteSpec:
    source: str
    sink: str
    sink_options: dict[str, Any]
    provider: ProviderSpec
    run_id: str
    version: int | None
    batch_size: int
    dedup: bool
    store_text: bool


def task_ids() -> tuple[int, int]:
    """(partition id, attempt number) of the running task; (0, 0) outside Spark."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return (ctx.partitionId(), ctx.attemptNumber()) if ctx is not None else (0, 0)


def plan_partition(spec: PlanSpec, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Key strings, validity flags, point ids, content hashes and (when shipped) each row's ledger state.

    The batches hold key, text and ``ord``, each row's place in the input (numbered before any
    repartition, so "the last row of a key" keeps its meaning).
    """
    known = spec.known if spec.known is not None else (spec.broadcast.value if spec.broadcast else None)
    for batch in batches:
        n = batch.num_rows
        if not n:
            continue
        keys = key_strings(batch.column(0))
        texts = batch.column(1).cast(pa.string())
        pid_digests = point_id_digests(spec.source, [k or "" for k in keys.to_pylist()])
        hash_digests = content_digests([t or "" for t in texts.to_pylist()])
        states = known_states(known, pid_digests, hash_digests) if known is not None else [None] * n
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(format_point_ids(pid_digests), pa.string()),
                fixed16(pid_digests),
                keys,
                texts,
                pa.array(hex_hashes(hash_digests), pa.string()),
                fixed16(hash_prefixes(hash_digests)),
                pc.is_null(keys),
                blank_texts(texts),
                batch.column(2).cast(pa.int64()),
                pa.array(states, pa.string()),
            ],
            schema=PLAN_SCHEMA,
        )


class _Holders:
    """The ledger port :func:`vectorize` asks for reusable vectors, answered from the rows' own columns."""

    def __init__(self) -> None:
        self.by_hash: dict[str, str] = {}

    def find_embedded(self, model: str, hashes: list[str], *, sink: str) -> dict[str, str]:
        return {h: self.by_hash[h] for h in hashes if h in self.by_hash}


def write_partition(spec: WriteSpec, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Embed and write one partition's rows in batches; report counts and provenance per batch."""
    part, attempt = task_ids()
    try:
        provider = spec.provider.build()
        sink = open_sink(spec.sink, **spec.sink_options)
    except DriftError as exc:
        yield _error(part, attempt, exc)  # terminal or not, every task would fail the same way
        return
    holders = _Holders()
    with sink:
        for batch in _rebatch(batches, spec.batch_size):
            report, error = _write_batch(spec, provider, sink, holders, batch, part, attempt)
            yield report
            if error is None:
                continue
            if isinstance(error, TerminalError):
                yield _error(part, attempt, error)  # a retry would fail the same way: report, do not raise
                return
            raise RemoteError(error)  # Spark retries the task; what this attempt wrote is found again


def _write_batch(
    spec: WriteSpec,
    provider: EmbeddingProvider,
    sink: Sink,
    holders: _Holders,
    batch: pa.RecordBatch,
    part: int,
    attempt: int,
) -> tuple[pa.RecordBatch, Exception | None]:
    data = batch.to_pydict()
    n = batch.num_rows
    versions = data["version"] if "version" in data else [spec.version] * n  # a change feed: per row
    rows = PointRows(data["pid"], data["key"], data["text"], data["hash"], versions)
    for h, holder in zip(data["hash"], data["holder"], strict=True):
        if holder is not None:
            holders.by_hash.setdefault(h, holder)
    # Points already holding their text (a failed attempt of this task, or a run killed before its
    # ledger write) are neither paid nor written again; their vectors serve equal texts below.
    held = sink.fetch(list(rows.ids))
    done: list[int] = []
    paid_by_this_run: dict[str, str] = {}
    for i, (pid, h) in enumerate(zip(rows.ids, rows.hashes, strict=True)):
        point = held.get(pid)
        if point is None or point.payload.get(PAYLOAD_HASH) != h:
            continue
        ours = point.payload.get(PAYLOAD_RUN) == spec.run_id
        if point.payload.get(PAYLOAD_MODEL) != provider.model or not (ours or spec.dedup):
            continue  # without dedup only this run's own earlier attempt counts as done
        done.append(i)
        holders.by_hash[h] = pid
        if ours:
            paid_by_this_run[h] = rows.texts[i]
    done_set = set(done)
    todo = rows.take([i for i in range(n) if i not in done_set])
    got = vectorize(
        {h: t for h, t in zip(todo.hashes, todo.texts, strict=True) if h not in paid_by_this_run},
        provider=provider,
        sink=sink,
        ledger=holders,  # type: ignore[arg-type]
        reuse=spec.dedup,
    ) if len(todo) else None  # fmt: skip
    n_embedded = n_reused = tokens = 0
    cost: float | None = 0.0
    written = rows.take(done)
    if got is not None:
        n_embedded, n_reused, tokens, cost = got.n_embedded, got.n_reused, got.tokens, got.cost_usd
        keep = [i for i, h in enumerate(todo.hashes) if h in got.by_hash]
        ready = todo.take(keep)
        if len(ready):
            job = build_write_job(
                ready, got, source=spec.source, model=provider.model, dim=provider.dim,
                run_id=spec.run_id, store_text=spec.store_text,
            )  # fmt: skip
            sink.upsert(job.points)
            first = dict(zip(reversed(ready.hashes), reversed(ready.ids), strict=True))
            for h in got.embedded:
                holders.by_hash[h] = first[h]
            written = _concat(written, ready)
    if paid_by_this_run:  # the lost attempt's spend, which never reached the driver
        recovered = list(paid_by_this_run.values())
        more = provider.estimate_tokens(recovered)
        price = provider.price_per_million_tokens()
        n_embedded += len(recovered)
        tokens += more
        cost = add_cost(cost, None if price is None else more * price / 1e6)
    report = pa.RecordBatch.from_pylist(
        [
            {
                "partition": part,
                "attempt": attempt,
                "n_embedded": n_embedded,
                "n_reused": n_reused,
                "n_recovered": len(done),
                "tokens": tokens,
                "cost_usd": cost,
                "provenance": _provenance_ipc(written),
                "error": None,
            }
        ],
        schema=REPORT_SCHEMA,
    )
    return report, (got.error if got is not None else None)


def _concat(a: PointRows, b: PointRows) -> PointRows:
    return PointRows(
        [*a.ids, *b.ids], [*a.keys, *b.keys], [*a.texts, *b.texts], [*a.hashes, *b.hashes],
        [*a.versions, *b.versions],
    )  # fmt: skip


def _provenance_ipc(rows: PointRows) -> bytes:
    table = pa.table(
        [
            pa.array(list(rows.ids), pa.string()),
            pa.array(list(rows.keys), pa.string()),
            pa.array(list(rows.hashes), pa.string()),
            pa.array(list(rows.versions), pa.int64()),
        ],
        schema=PROVENANCE_SCHEMA,
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, PROVENANCE_SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_provenance(blob: bytes, *, source: str) -> list[Upsert]:
    """The driver's side of :func:`_provenance_ipc`: ledger rows to record."""
    table = pa.ipc.open_stream(blob).read_all()
    cols = [table.column(c).to_pylist() for c in ("pid", "key", "hash", "version")]
    return [Upsert(pid, source, key, h, v) for pid, key, h, v in zip(*cols, strict=True)]


def _error(part: int, attempt: int, exc: BaseException) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [
            {
                "partition": part,
                "attempt": attempt,
                "n_embedded": 0,
                "n_reused": 0,
                "n_recovered": 0,
                "tokens": 0,
                "cost_usd": 0.0,
                "provenance": None,
                "error": encode(exc),
            }
        ],
        schema=REPORT_SCHEMA,
    )


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    from ..sources.base import rebatch

    return rebatch(batches, size)


def probe(spec: WriteSpec, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Build the provider and open the sink on an executor, as every write task will; report an error."""
    for _ in batches:
        pass
    part, attempt = task_ids()
    try:
        spec.provider.build()
        with open_sink(spec.sink, **spec.sink_options) as sink:
            sink.dimension()
    except Exception as exc:
        yield _error(part, attempt, exc)
        return
    yield pa.RecordBatch.from_pylist([], schema=REPORT_SCHEMA)

"""watch() on Spark: the window's upserts are embedded and written on the executors.

The window's change rows are read, collapsed, checked and guarded per key on
the driver exactly as in the single-process watch (one code path in
watch.py: :func:`..watch._apply_batch` decides insert / update / delete /
unchanged / stale per key against the ledger's source versions). Only what
costs per row — the provider calls and the sink writes of the upserts — goes
to the executors, through the same write job as a distributed embed
(:func:`.distributed_embed.write_rows`), each row carrying its own source
version. Why the guard stays on the driver: it needs the ledger (a SQLite
file on the driver) for the window's keys only, which are already in the
driver's memory as the change rows were read; shipping them out and back
would cost more than the lookup.

Order, as in the local watch: the upserted points the ledger knows with
another text are marked pending before the write job starts; deletes and
version moves are applied by the driver after the upserts (sink, then ledger).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..ledger import Ledger
from ..point_writes import PointRows
from ..records import WatchRun
from ..sinks.base import Sink
from .distributed_embed import SparkOptions, probe_executors, write_rows
from .known import hash_prefix
from .tasks import ProviderSpec, WriteSpec

_CHUNK = 10_000


def apply_upserts(
    run: WatchRun,
    batches: Sequence[PointRows],
    *,
    spark: Any,
    sink_uri: str,
    sink: Sink,
    ledger: Ledger,
    provider: ProviderSpec,
    model: str,
    batch_size: int,
    store_text: bool,
    options: SparkOptions,
) -> None:
    """Mark, then embed and write ``batches`` on the executors; count into ``run``."""
    rows = [r for b in batches for r in zip(b.ids, b.keys, b.texts, b.hashes, b.versions, strict=True)]
    run.runner = "spark"
    if not rows:
        run.spark = {"partitions": 0, "executor_tasks": 0, "retried_tasks": 0}
        return
    for start in range(0, len(rows), _CHUNK):  # see writer.py: invalidate, then overwrite
        part = rows[start : start + _CHUNK]
        ledger.mark_pending(
            sink.uri, [r[0] for r in part], run_id=run.run_id, hashes=[r[3] for r in part], model=model
        )
    holders = ledger.find_embedded(model, sorted({r[3] for r in rows}), sink=sink.uri)
    table = pa.table(
        {
            "pid": pa.array([r[0] for r in rows], pa.string()),
            "key": pa.array([r[1] for r in rows], pa.string()),
            "text": pa.array([r[2] for r in rows], pa.string()),
            "hash": pa.array([r[3] for r in rows], pa.string()),
            "hash16": pa.array([hash_prefix(r[3]) for r in rows], pa.binary()),
            "holder": pa.array([holders.get(r[3]) for r in rows], pa.string()),
            "version": pa.array([r[4] for r in rows], pa.int64()),
        }
    )
    write = WriteSpec(
        source=run.source, sink=sink_uri, sink_options=dict(options.sink_options), provider=provider,
        run_id=run.run_id, version=None, batch_size=batch_size, dedup=True, store_text=store_text,
    )  # fmt: skip
    probe_executors(spark, write)
    frame = spark.createDataFrame(table)
    parts = write_rows(run, spark, frame, write, ledger, sink.uri, model, len(rows), options)
    run.spark = {"partitions": parts["partitions"], "executor_tasks": parts["tasks"],
                 "retried_tasks": parts["retried"]}  # fmt: skip

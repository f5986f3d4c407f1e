"""embed() on Spark: the executors plan, embed and write; the driver checks, marks and records.

Order of the Spark jobs (each a whole-table pass on the executors):

1. **Plan** (``mapInArrow``): key strings, null/blank flags, point ids and
   content hashes, and each row's ledger state (``current``/``update``/``new``,
   see :mod:`.known` for how the ledger's view is shipped). Persisted, so the
   later jobs do not hash again.
2. **Check** — the single-process pre-pass's rules, as aggregations: a null key
   or (with ``on_invalid="error"``) a blank text, or a key seen twice (with
   ``on_duplicate="error"``) fails the run before anything is written.
3. **Mark** — the crash-consistency rule of writer.py, done by the driver up
   front from the plan: every point the ledger records as live with another
   text or model (``update`` rows: only their ids and hashes come to the
   driver) is marked pending before any executor may overwrite it. Marking all
   of them before the write job, instead of batch by batch as the local writer
   does, is what lets executors write with no ledger at hand; the price is that
   a run killed early leaves more marks, which the next writer on the sink
   settles against the sink's payloads (:func:`..writer.settle_marks`), as
   after any kill.
4. **Write** (``mapInArrow`` over the rows to write, repartitioned by content
   hash so each distinct text is embedded by one task, once): each task builds
   its own provider client and sink connection, writes in batches, and returns
   per batch its counts and provenance rows as Arrow IPC. Nothing else crosses
   back: no vectors.
5. **Record** — the driver reads the reports one partition at a time (bounded
   memory), keeps one attempt per partition id, and records provenance in the
   ledger ("sink first": every reported point is already in the sink).

If the write job fails, nothing of it is recorded; the points its finished
tasks wrote are found in the sink by the re-run's tasks (same ids, payload
with the same hash and model) and kept without paying again (see
:mod:`.tasks`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, InvalidRowsError
from ..identity import format_point_ids
from ..ledger import Ledger
from ..records import EmbedRun
from ..rows import OnDuplicate, OnInvalid
from ..sinks.base import Sink
from ..vectorize import add_cost
from ..writer import settle_marks
from .known import STATE_CURRENT, STATE_UPDATE, KnownVia, read_ledger, resolve_known_via
from .remote_errors import decode, from_spark_failure
from .tasks import PLAN_SCHEMA, REPORT_SCHEMA, PlanSpec, ProviderSpec, WriteSpec, read_provenance

log = logging.getLogger(__name__)

_SHOW = 5
_MARK_CHUNK = 10_000
_RECORD_ROWS = 50_000
#: at most this many rows in one plan or write task (see _spread)
_ROWS_PER_TASK = 250_000
#: sinks every executor can open by URI (an embedded store lives in one process's files)
EXECUTOR_SINK_SCHEMES = ("pgvector", "postgresql", "postgres", "qdrant", "qdrants")
_EXECUTORS = "on a Spark executor"


@dataclass(frozen=True)
class SparkOptions:
    """How the Spark runner works; the defaults suit most tables."""

    known_via: KnownVia = "auto"
    #: write tasks; default: one per ``batch_size`` rows to write, at most 4 per core unless that
    #: would put more than 250k rows in one task
    partitions: int | None = None
    sink_options: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _phase(name: str) -> Iterator[None]:
    """Log how long a step took: where a slow Spark run spends its time."""
    began = time.monotonic()
    yield
    log.info("spark runner: %s took %.1f s", name, time.monotonic() - began)


def executor_sink_problem(sink: str | Sink) -> str | None:
    """Why executors cannot write this sink, or None when they can."""
    if not isinstance(sink, str):
        return "the sink was given as an open object; executors need its URI to open their own connection"
    scheme = sink.split("://", 1)[0].lower()
    if scheme not in EXECUTOR_SINK_SCHEMES:
        return f"{scheme}:// is an in-process store that only one process can write"
    return None


def embed_partitions(
    run: EmbedRun,
    frame: Any,
    *,
    sink_uri: str,
    sink: Sink,
    ledger: Ledger,
    provider: ProviderSpec,
    model: str,
    dim: int,
    version: int | None,
    batch_size: int,
    dedup: bool,
    store_text: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    on_duplicate: OnDuplicate,
    delete_missing: bool,
    options: SparkOptions,
) -> list[str]:
    """Run the plan, check, mark and write jobs; count into ``run``; return ids of unseen points.

    ``frame`` holds the key and text columns first (a :class:`..sources.spark.SparkSource`'s frame).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    with _phase("reading the ledger"):
        settle_marks(sink, ledger)  # a killed run's marks, before reading what the ledger vouches for
        view = read_ledger(ledger, sink=sink.uri, source=run.source, model=model)
    via = resolve_known_via(options.known_via, view.n_known)
    spec = PlanSpec(source=run.source)
    shipped = None
    if via == "broadcast":
        context = _spark_context(spark)
        if context is not None:
            shipped = context.broadcast(view.index())
            spec = PlanSpec(run.source, broadcast=shipped)
        else:
            spec = PlanSpec(run.source, known=view.index())  # Spark Connect: in the task closure

    def plan(batches: Any) -> Any:
        from .tasks import plan_partition

        return plan_partition(spec, batches)

    planned = _spread(frame, spark).mapInArrow(plan, _ddl(PLAN_SCHEMA))
    if via == "join":
        known = spark.createDataFrame(view.known_table())
        planned = (
            planned.drop("state")
            .join(known, planned["pid16"] == known["k_pid"], "left")
            .withColumn(
                "state",
                F.when(F.col("k_pid").isNull(), F.lit("new"))
                .when(F.col("k_ok") & (F.col("k_hash") == F.col("hash16")), F.lit(STATE_CURRENT))
                .otherwise(F.lit(STATE_UPDATE)),
            )
            .drop("k_pid", "k_hash", "k_ok")
        )
    planned = planned.persist(StorageLevel.DISK_ONLY)  # 5M rows of text held in the heap overflowed 2 GiB
    cached = [planned]
    try:
        with _phase("plan and check"):
            valid = _check(run, planned, key_col=key_col, text_col=text_col, on_invalid=on_invalid,
                           on_duplicate=on_duplicate)  # fmt: skip
        counts = valid.agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.col("state") == STATE_CURRENT).cast("long")).alias("current"),
            F.sum((F.col("state") == STATE_UPDATE).cast("long")).alias("update"),
        ).first()
        n_valid = int(counts["n"])
        n_current, n_update = int(counts["current"] or 0), int(counts["update"] or 0)
        run.n_rows_processed += n_valid
        if dedup:
            run.n_rows_deduped += n_current
            todo = valid.where(F.col("state") != STATE_CURRENT)
        else:
            todo = valid
        n_todo = n_valid - n_current if dedup else n_valid
        if n_update:
            updates = valid.where(F.col("state") == STATE_UPDATE)
            with _phase("marking updated points"):
                _mark(ledger, sink.uri, updates, run_id=run.run_id, model=model)
        write = WriteSpec(
            source=run.source, sink=sink_uri, sink_options=dict(options.sink_options), provider=provider,
            run_id=run.run_id, version=version, batch_size=batch_size, dedup=dedup, store_text=store_text,
        )  # fmt: skip
        parts = {"partitions": 0, "tasks": 0, "retried": 0}  # nothing to write: no write job at all
        if n_todo:
            with _phase("probing an executor"):
                probe_executors(spark, write)
            rows = todo.select("pid", "key", "text", "hash", "hash16")
            if dedup and len(view.holder_ids):
                holders = spark.createDataFrame(view.holders_table())
                if via == "broadcast":
                    holders = F.broadcast(holders)
                rows = rows.join(holders, rows["hash16"] == holders["h_hash"], "left").drop("h_hash")
            else:
                rows = rows.withColumn("holder", F.lit(None).cast("string"))
            parts = write_rows(run, spark, rows, write, ledger, sink.uri, model, n_todo, options)
        run.spark = {
            "partitions": parts["partitions"],
            "executor_tasks": parts["tasks"],
            "retried_tasks": parts["retried"],
            "known_via": via,
            "known_points": view.n_known,
        }
        if not delete_missing:
            return []
        known_ids = spark.createDataFrame(view.known_table().select(["k_pid"]))
        unseen = known_ids.join(valid.select("pid16"), known_ids["k_pid"] == valid["pid16"], "left_anti")
        raw = b"".join(bytes(r["k_pid"]) for r in unseen.toLocalIterator())
        return format_point_ids(np.frombuffer(raw, dtype="S16"))
    finally:
        for df in cached:
            df.unpersist()
        if shipped is not None:
            shipped.unpersist()


def _check(
    run: EmbedRun,
    planned: Any,
    *,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    on_duplicate: OnDuplicate,
) -> Any:
    """The pre-pass rules of rows.check_input, as Spark aggregations; return the rows to go on with."""
    from pyspark.sql import functions as F

    flags = planned.agg(
        F.sum(F.col("null_key").cast("long")).alias("null_keys"),
        F.sum((F.col("blank") & ~F.col("null_key")).cast("long")).alias("blank"),
    ).first()
    n_null, n_blank = int(flags["null_keys"] or 0), int(flags["blank"] or 0)
    if n_null:
        raise InvalidRowsError(
            f"{n_null} row(s) have a null key in column {key_col!r}; nothing was written",
            hint=f"every row needs a key: fix the data or filter them out (filter='{key_col} IS NOT NULL')",
        )
    if n_blank and on_invalid == "error":
        shown = [r["key"] for r in planned.where("blank").select("key").limit(_SHOW).collect()]
        raise InvalidRowsError(
            f"{n_blank} row(s) have a null or blank {text_col!r}, e.g. keys {shown}; nothing was written",
            hint=f"fix the data, filter (filter='{text_col} IS NOT NULL'), or pass on_invalid='skip'",
        )
    run.n_rows_processed += n_blank
    run.n_skipped += n_blank
    valid = planned.where(~F.col("blank")) if n_blank else planned
    repeated = valid.groupBy("pid16").agg(F.count(F.lit(1)).alias("n"), F.max("ord").alias("last"))
    repeated = repeated.where(F.col("n") > 1)
    dupes = repeated.agg(F.count(F.lit(1)).alias("keys"), F.sum("n").alias("rows")).first()
    n_keys, n_rows = int(dupes["keys"] or 0), int(dupes["rows"] or 0)
    if not n_keys:
        return valid
    if on_duplicate == "error":
        sample = valid.join(repeated.limit(_SHOW), "pid16").select("key").distinct()
        shown = [r["key"] for r in sample.collect()]
        raise InvalidRowsError(
            f"key column {key_col!r} is not unique: {n_keys} key(s) appear more than once"
            f" ({n_rows} rows), e.g. {shown[:_SHOW]}; nothing was written",
            hint="key_col must identify rows uniquely (use the primary key), deduplicate the source, or "
            "pass on_duplicate='keep_last' to keep each key's last row",
        )
    if on_duplicate != "keep_last":
        raise InvalidRowsError(
            f"on_duplicate must be 'error' or 'keep_last', got {on_duplicate!r}",
            hint="pass on_duplicate='keep_last' to keep each key's last row",
        )
    dropped = n_rows - n_keys
    log.warning("on_duplicate='keep_last': %d earlier row(s) of repeated keys left out", dropped)
    run.n_rows_processed += dropped
    run.n_skipped += dropped
    last = repeated.select("pid16", "last")
    earlier = valid.join(last, "pid16").where(F.col("ord") < F.col("last")).select("ord")
    return valid.join(earlier, "ord", "left_anti")


def _mark(ledger: Ledger, sink: str, updates: Any, *, run_id: str, model: str) -> None:
    """Mark the points the write job will overwrite (see the module docstring), a chunk at a time."""
    ids: list[str] = []
    hashes: list[str] = []
    for row in updates.select("pid", "hash").toLocalIterator():
        ids.append(row["pid"])
        hashes.append(row["hash"])
        if len(ids) >= _MARK_CHUNK:
            ledger.mark_pending(sink, ids, run_id=run_id, hashes=hashes, model=model)
            ids, hashes = [], []
    ledger.mark_pending(sink, ids, run_id=run_id, hashes=hashes, model=model)


def probe_executors(spark: Any, write: WriteSpec) -> None:
    """Build the provider and open the sink on one executor first: a missing key fails here, once."""
    from .tasks import probe

    def run_probe(batches: Any) -> Any:
        return probe(write, batches)

    try:
        rows = spark.range(1, numPartitions=1).mapInArrow(run_probe, _ddl(REPORT_SCHEMA)).collect()
    except Exception as exc:
        raise from_spark_failure(exc, where=_EXECUTORS) from exc
    for row in rows:
        if row["error"]:
            err = decode(row["error"], where=_EXECUTORS)
            if err is not None:
                if isinstance(err, ConfigError):
                    err.hint = (err.hint or "") + (
                        " — on Spark every executor builds its own client: give the executors the key "
                        "(spark.executorEnv.<VAR>, the cluster's secrets) or pass it in provider_options"
                    )
                    err.args = (f"{err.message} — {err.hint}",)
                raise err


def write_rows(
    run: Any,
    spark: Any,
    rows: Any,
    write: WriteSpec,
    ledger: Ledger,
    sink: str,
    model: str,
    n_todo: int,
    options: SparkOptions,
) -> dict[str, int]:
    """The write job over ``rows`` (pid, key, text, hash, hash16, holder[, version]); record what it reports.

    ``run`` is any run record with the write counters (EmbedRun, WatchRun).
    """
    from pyspark import StorageLevel

    n_parts = options.partitions or max(
        1,
        min(4 * _parallelism(spark), math.ceil(n_todo / write.batch_size)),
        math.ceil(n_todo / _ROWS_PER_TASK),  # a task's rows are shuffled and sorted in its memory
    )
    rows = rows.repartition(n_parts, "hash16").sortWithinPartitions("hash16")

    def write_fn(batches: Any) -> Any:
        from .tasks import write_partition

        return write_partition(write, batches)

    # On disk: each report carries its batch's provenance (~0.5 MB), read once by the driver; held in
    # the heap, 5M rows' worth (0.6 GB) beside the cached plan overflowed a 2 GiB executor.
    reports = rows.mapInArrow(write_fn, _ddl(REPORT_SCHEMA)).persist(StorageLevel.DISK_ONLY)
    try:
        try:
            with _phase("the write job"):
                reports.count()  # all partitions at once
        except Exception as exc:
            raise from_spark_failure(exc, where="writing on the Spark executors") from exc
        attempts: dict[int, int] = {}
        first_error = None
        pending: list[Any] = []
        n_pending = 0
        for r in reports.toLocalIterator():
            part, attempt = int(r["partition"]), int(r["attempt"])
            if attempts.setdefault(part, attempt) != attempt:
                continue  # another attempt of a partition already reported: keep one
            if r["error"]:
                first_error = first_error or decode(r["error"], where=_EXECUTORS)
                continue
            run.n_embedded += int(r["n_embedded"])
            run.n_reused += int(r["n_reused"])
            run.tokens += int(r["tokens"])
            run.cost_usd = add_cost(run.cost_usd, r["cost_usd"])
            upserts = read_provenance(bytes(r["provenance"]), source=run.source)
            pending.extend(upserts)
            n_pending += len(upserts)
            if n_pending >= _RECORD_ROWS:
                _record(ledger, sink, pending, model=model, run=run)
                pending, n_pending = [], 0
        _record(ledger, sink, pending, model=model, run=run)
        if first_error is not None:
            raise first_error
        return {
            "partitions": n_parts,
            "tasks": len(attempts),
            "retried": sum(1 for a in attempts.values() if a > 0),
        }
    finally:
        reports.unpersist()


def _record(ledger: Ledger, sink: str, upserts: list[Any], *, model: str, run: Any) -> None:
    if upserts:
        ledger.record_upserts(sink, upserts, model=model, run_id=run.run_id)
        run.n_written += len(upserts)


def _spread(frame: Any, spark: Any) -> Any:
    """Key, text and each row's input order, over at least two partitions per core.

    A Parquet file under the split size is one partition: planned as it comes, one core would
    hash every row while the others wait, and a partition of millions of rows (5M rows, 81 MB of
    Parquet) does not fit a 2 GiB executor heap once planned. So at least two partitions per core
    and at most :data:`_ROWS_PER_TASK` rows each (the count is one pass on the JVM). The order is
    numbered before the repartition, for ``keep_last``.
    """
    from pyspark.sql import functions as F

    numbered = frame.select(frame.columns[0], frame.columns[1], F.monotonically_increasing_id().alias("ord"))
    wanted = max(2 * _parallelism(spark), math.ceil(frame.count() / _ROWS_PER_TASK))
    have = _partitions(frame)
    return numbered if have is not None and have >= wanted else numbered.repartition(wanted)


def _partitions(frame: Any) -> int | None:
    """How many partitions ``frame`` has (None on Spark Connect, which does not say)."""
    try:
        return int(frame.rdd.getNumPartitions())
    except Exception:
        return None


def _spark_context(spark: Any) -> Any:
    try:
        return spark.sparkContext  # classic Spark; Spark Connect has none
    except Exception:
        return None


def _parallelism(spark: Any) -> int:
    context = _spark_context(spark)
    if context is not None:
        return int(context.defaultParallelism)
    return int(spark.conf.get("spark.sql.shuffle.partitions", "8"))


def _ddl(schema: Any) -> str:
    names = {
        "string": "string", "binary": "binary", "bool": "boolean", "int64": "bigint",
        "int32": "int", "double": "double",
    }  # fmt: skip
    return ", ".join(f"{f.name} {names[str(f.type)]}" for f in schema)

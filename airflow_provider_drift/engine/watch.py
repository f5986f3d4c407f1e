"""watch(): keep a sink equal to a Delta table by applying its change data feed.

Semantics (see docs/watch.md):

* **Watermark** — per (source, sink), exclusive: the last version whose
  changes are all applied. A run reads versions ``(watermark, end]`` and
  moves the watermark to ``end`` only after every sink and ledger write of
  the window succeeded; a run that fails leaves it where it was, and the
  re-run repeats the window idempotently.
* **Version guard** — the ledger remembers, per point, the source version
  it reflects (``vectors.source_version``; deletes leave a tombstone). A
  change at a version ``<=`` that is skipped, so windows replayed in any
  order never apply an older state over a newer one, and versions
  ``<=`` the watermark are never read again.
* **First run** — with no watermark, the current snapshot is embedded in
  full (``embed`` with ``delete_missing``: unchanged texts are not re-embedded)
  and the watermark set to the snapshot version. ``full_refresh=True`` does
  the same later, e.g. after a VACUUM removed change data.
* **Interval mode** — ``interval=(start, end)`` applies only the commits
  whose commit time is in ``[start, end)``: the same commits on every re-run.
  It advances the watermark only when the commits it applied directly follow
  it, so the watermark keeps meaning "everything up to here is applied".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from .changes import CHANGE_TYPE, KEY, TEXT, VERSION, ChangeFeed, collapse, open_feed, preimages
from .embed import DEFAULT_BATCH_SIZE, embed
from .errors import ChangeFeedError, ConfigError, InvalidRowsError
from .handles import ledger_for, sink_for
from .identity import content_hashes, point_ids, vector_scheme
from .ledger import Ledger, Upsert, VectorState
from .ledger.leases import DEFAULT_LEASE_WAIT_S
from .migration_targets import followed, open_migration_targets
from .point_writes import PointRows, PointWriter
from .providers import EmbeddingProvider, get_provider
from .recorded import RunStart, recorded_run
from .records import WatchRun
from .rows import OnInvalid
from .sinks.base import Distance, Sink
from .sources import open_source, source_name
from .spark import SparkOptions

log = logging.getLogger(__name__)

_SHOW = 5
_LOOKUP_CHUNK = 10_000


def watch(
    source_table: str,
    *,
    text_col: str,
    key_col: str,
    sink: str | Sink,
    model: str,
    since_version: int | None = None,
    until_version: int | None = None,
    shadow_mode: bool = False,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    dim: int | None = None,
    interval: tuple[datetime, datetime] | None = None,
    full_refresh: bool = False,
    source: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_invalid: OnInvalid = "error",
    store_text: bool = False,
    distance: Distance = "cosine",
    provider: EmbeddingProvider | None = None,
    provider_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
    spark: Any = None,
    run_context: dict[str, Any] | None = None,
    lease_wait_s: float = DEFAULT_LEASE_WAIT_S,
    runner: Literal["local", "spark"] = "local",
    spark_options: SparkOptions | None = None,
) -> WatchRun:
    """Apply the table's committed changes since the watermark to the sink and return what happened.

    :param source_table: path/URI of the Delta table (a table name when ``spark`` is given).
    :param since_version: apply versions after this one (exclusive) instead of the watermark when
        it is later, or when there is no watermark (then no snapshot embed happens).
    :param until_version: apply versions up to this one (inclusive) at most; default: the latest.
    :param interval: ``(start, end)``: apply only commits whose commit time is in ``[start, end)``.
    :param full_refresh: embed the current snapshot in full and move the watermark to it; points
        whose sink payload disagrees with the ledger are rewritten too (a repair, see verify.py).
    :param source: the source's stable name (default: derived from the path, as ``embed`` does).
    :param lease_wait_s: how long to wait for another watch of the same (source, sink) to finish
        before failing with a transient ``LeaseBusyError``.
    :param runner: ``"spark"``: the window's upserts are embedded and written on the executors of
        ``spark`` (its session, or ``spark.spark`` for a wrapper), the per-key decisions made here
        (see spark/distributed_watch.py); needs a sink every executor can open by URI. The first
        run's snapshot embed (and ``full_refresh``) still runs in this process.
    :param on_invalid: a row whose final text is null/blank, or a change row without a key:
        ``"error"`` fails the run before anything is written; ``"skip"`` leaves such rows out
        (a row whose text became blank loses its vector).
    """
    started = time.monotonic()
    if interval is not None and not interval[0] < interval[1]:
        raise ConfigError(
            f"the interval {interval[0]} → {interval[1]} is empty",
            hint="interval mode needs data intervals of non-zero length: schedule the DAG with a "
            "data-interval timetable, e.g. CronDataIntervalTimetable('@hourly', timezone='UTC')",
        )
    given_provider = provider
    provider = provider or get_provider(model, shadow_mode=shadow_mode, dim=dim, options=provider_options)
    with ExitStack() as stack:
        sink_obj = sink_for(sink, stack, sink_options)
        led = ledger_for(ledger, stack)
        on_executors = _executors(runner, spark, sink, sink_obj, led, provider, given_provider, shadow_mode,
                                  dim, provider_options, batch_size, store_text, spark_options)  # fmt: skip
        name = _source_name(source_table, source=source, key_col=key_col, text_col=text_col, spark=spark)
        # One watch per (source, sink) at a time: a second waits, then sees the advanced watermark.
        stack.enter_context(led.lease(name, sink_obj.uri, wait_s=lease_wait_s))
        watermark = led.get_watermark(name, sink_obj.uri)
        if full_refresh or (watermark is None and since_version is None):
            return _baseline(
                source_table,
                name=name,
                text_col=text_col,
                key_col=key_col,
                sink=sink_obj,
                ledger=led,
                provider=provider,
                shadow_mode=shadow_mode,
                batch_size=batch_size,
                on_invalid=on_invalid,
                store_text=store_text,
                distance=distance,
                spark=spark,
                run_context=run_context,
                mode="full_refresh" if full_refresh else "baseline",
            )
        feed = open_feed(source_table, spark=spark)
        floor = max(v for v in (watermark, since_version) if v is not None)
        latest = feed.latest_version()
        end = latest if until_version is None else min(until_version, latest)
        if interval is not None:
            versions = [v for v in feed.versions_between(*interval) if floor < v <= end]
        else:
            versions = list(range(floor + 1, end + 1))
        run = WatchRun(
            run_id="",
            model=provider.model,
            sink=sink_obj.uri,
            source=name,
            since_version=(versions[0] - 1) if versions else floor,
            to_version=versions[-1] if versions else floor,
            mode="interval" if interval is not None else "watermark",
        )
        sink_obj.ensure_collection(provider.dim, distance=distance)
        led.register_sink(
            sink_obj.uri, model=provider.model, dim=provider.dim, distance=distance,
            vector_scheme=vector_scheme(provider),
        )  # fmt: skip
        start = RunStart(
            kind="watch",
            model=provider.model,
            sink=sink_obj.uri,
            source=name,
            run_context=run_context,
            params={
                "text_col": text_col,
                "key_col": key_col,
                "since_version": since_version,
                "until_version": until_version,
                "watermark": watermark,
                "interval": [t.isoformat() for t in interval] if interval else None,
                "shadow_mode": shadow_mode,
            },
        )
        with recorded_run(led, run, start, started=started):
            if versions:
                _apply_window(
                    run, feed, versions, interval is not None, key_col, text_col, on_invalid,
                    provider, sink_obj, led, batch_size, store_text,
                    on_executors,
                )  # fmt: skip
                sink_obj.flush()
            _advance_watermark(led, run, name, sink_obj.uri, versions, floor, interval is not None)
        follow = {
            "source": name,
            "until_version": until_version,
            "interval": interval,
            "batch_size": batch_size,
            "on_invalid": on_invalid,
            "store_text": store_text,
            "spark": spark,
            "run_context": run_context,
        }
        _follow_migrations(
            run, source_table, sink_obj, led, text_col, key_col, shadow_mode, provider_options, follow
        )
        return run


def _executors(
    runner: str,
    spark: Any,
    sink: str | Sink,
    sink_obj: Sink,
    ledger: Ledger,
    provider: EmbeddingProvider,
    given_provider: EmbeddingProvider | None,
    shadow_mode: bool,
    dim: int | None,
    provider_options: dict[str, Any] | None,
    batch_size: int,
    store_text: bool,
    spark_options: SparkOptions | None,
) -> Callable[[WatchRun, list[PointRows]], None] | None:
    """How the window's upserts are applied on Spark executors; None for this process."""
    if runner == "local":
        return None
    from .spark import executor_sink_problem

    session = getattr(spark, "spark", spark)  # a session, or a wrapper around one that reads the feed
    problem = executor_sink_problem(sink)
    if runner != "spark" or session is None or problem is not None:
        raise ConfigError(
            f"runner={runner!r} needs spark=<SparkSession> and a sink every executor can write"
            + (f" ({problem})" if problem else ""),
            hint="pass spark= and a pgvector:// or qdrant://HOST sink URI, or runner='local'",
        )
    from .spark.distributed_watch import apply_upserts
    from .spark.tasks import ProviderSpec

    options = dict(provider_options or {})
    spec = ProviderSpec(
        provider.model, shadow_mode=shadow_mode, dim=dim, options=options, instance=given_provider
    )

    def apply(run: WatchRun, upserts: list[PointRows]) -> None:
        apply_upserts(
            run, upserts, spark=session, sink_uri=str(sink), sink=sink_obj, ledger=ledger, provider=spec,
            model=provider.model, batch_size=batch_size, store_text=store_text,
            options=spark_options or SparkOptions(),
        )  # fmt: skip

    return apply


def _follow_migrations(
    run: WatchRun,
    table: str,
    sink: Sink,
    ledger: Ledger,
    text_col: str,
    key_col: str,
    shadow_mode: bool,
    provider_options: dict[str, Any] | None,
    options: dict[str, Any],
) -> None:
    """Apply the same changes to every open dual-write migration's new collection (its own watermark).

    Runs after the old collection's window succeeded, so a failure here never
    moves (or holds back) the old collection's watermark; the next watch retries it.
    """
    from .dual_write import watch_migration_target

    for target in open_migration_targets(sink, ledger=ledger):
        done = watch_migration_target(
            target,
            table,
            sink=sink,
            ledger=ledger,
            text_col=text_col,
            key_col=key_col,
            shadow_mode=shadow_mode,
            provider_options=provider_options,
            **options,
        )
        run.migration_runs.append(
            followed(target, kind="watch", run_id=done.run_id, n_embedded=done.n_embedded)
        )


def _source_name(table: str, *, source: str | None, key_col: str, text_col: str, spark: Any) -> str:
    """The canonical source name embed() uses for this table, so both address the same points."""
    if source:
        return source
    if spark is None:
        return source_name(table)
    with open_source(table, key_col=key_col, text_col=text_col, spark=spark) as src:
        return str(src.name)


def _baseline(
    table: str,
    *,
    name: str,
    sink: Sink,
    ledger: Ledger,
    provider: EmbeddingProvider,
    mode: str,
    **options: Any,
) -> WatchRun:
    """Embed the whole current snapshot, then mark everything current as of its version."""
    done = embed(
        table,
        source=name,
        model=provider.model,
        sink=sink,
        ledger=ledger,
        provider=provider,
        delete_missing=True,
        repair=mode == "full_refresh",  # a full refresh also rewrites points the sink disagrees on
        **options,
    )
    if done.source_version is None:
        raise ChangeFeedError(
            f"{table} has no version: it is not a Delta table",
            hint="watch reads the Delta change data feed; use `drift embed` for other sources",
        )
    ledger.advance_source_versions(sink.uri, name, done.source_version)
    ledger.set_watermark(name, sink.uri, done.source_version, run_id=done.run_id)
    return WatchRun(
        run_id=done.run_id,
        model=done.model,
        sink=done.sink,
        source=name,
        since_version=None,
        to_version=done.source_version,
        n_changes=done.n_rows_processed,
        n_inserted=done.n_written,
        n_deleted=done.n_deleted,
        n_unchanged=done.n_rows_deduped,
        n_embedded=done.n_embedded,
        n_written=done.n_written,
        tokens=done.tokens,
        cost_usd=done.cost_usd,
        duration_s=done.duration_s,
        mode=mode,
        status=done.status,
    )


def _apply_window(
    run: WatchRun,
    feed: ChangeFeed,
    versions: list[int],
    only_listed: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    provider: EmbeddingProvider,
    sink: Sink,
    ledger: Ledger,
    batch_size: int,
    store_text: bool,
    on_executors: Callable[[WatchRun, list[PointRows]], None] | None = None,
) -> None:
    """Read, collapse, check, then apply the window's final states in batches of keys.

    ``on_executors``: embed and write the upserts there (see spark/distributed_watch.py) instead
    of on this process's writer threads; the per-key decisions are the same.
    """
    changes = feed.read(
        versions[0],
        versions[-1],
        key_col=key_col,
        text_col=text_col,
        versions=versions if only_listed else None,
    )
    # Pre-images are not changes of their own, but collapse needs them: an update that changed the
    # key leaves only a pre-image under the old key.
    run.n_changes = changes.num_rows - (pc.sum(preimages(changes.column(CHANGE_TYPE))).as_py() or 0)
    changes = _check_keys(changes, key_col=key_col, on_invalid=on_invalid)
    states = collapse(changes)
    del changes
    states = _check_texts(states, text_col=text_col, on_invalid=on_invalid)
    # Upserts go to the sink and then the ledger on embed()'s writer threads while the next batch is
    # looked up and embedded. Keys are unique after collapse, so batches never touch the same point
    # and deletes can wait: they are applied after the upserts (sink, then ledger, as one batch) —
    # their tombstones do not compete with the writer's transactions, and until then a deleted
    # point's vector can still be reused for a text another key now has.
    later = _Later()
    ids = point_ids(run.source, states.column(KEY).to_pylist())
    known = _known_states(ledger, sink.uri, ids)

    def batches() -> Iterator[tuple[pa.Table, list[str]]]:
        for start in range(0, states.num_rows, batch_size):
            yield states.slice(start, batch_size), ids[start : start + batch_size]

    if on_executors is not None:
        upserts: list[PointRows] = []
        for batch, batch_ids in batches():
            _apply_batch(run, batch, batch_ids, provider.model, known, upserts.append, later)
        on_executors(run, upserts)
    else:
        with PointWriter(
            run, source=run.source, provider=provider, sink=sink, ledger=ledger, reuse=True,
            store_text=store_text,
        ) as points:  # fmt: skip
            for batch, batch_ids in batches():
                _apply_batch(run, batch, batch_ids, provider.model, known, points.submit, later)
    later.apply(sink, ledger, model=provider.model, run_id=run.run_id)


def _check_keys(changes: pa.Table, *, key_col: str, on_invalid: OnInvalid) -> pa.Table:
    nulls = pc.is_null(changes.column(KEY))
    n = pc.sum(nulls.cast(pa.int64())).as_py() or 0
    if not n:
        return changes
    versions = sorted(set(pc.filter(changes.column(VERSION), nulls).to_pylist()))
    if on_invalid == "error":
        raise InvalidRowsError(
            f"{n} changed row(s) have a null key in column {key_col!r} (versions {versions[:_SHOW]})",
            hint="rows without a key cannot be tracked: fix the table, or pass {opt:on_invalid='skip'} "
            "to leave them out; the watermark did not move",
        )
    log.warning("skipping %d changed row(s) with a null %r (versions %s)", n, key_col, versions[:_SHOW])
    return changes.filter(pc.invert(nulls))


def _check_texts(states: pa.Table, *, text_col: str, on_invalid: OnInvalid) -> pa.Table:
    """Reject (or turn into deletes) rows whose final text is null or blank — before any write."""
    present = states.column("present")
    text = states.column(TEXT)
    # Casts, not literals: see changes._strings (a Python literal would make pyarrow import pandas).
    empty = pc.invert(pc.utf8_length(pc.utf8_trim_whitespace(text)).cast(pa.bool_()))
    blank = pc.or_kleene(pc.is_null(text), empty)  # never null: a null text is blank
    bad = pc.and_(present, blank)
    n = pc.sum(bad.cast(pa.int64())).as_py() or 0
    if not n:
        return states
    shown = pc.filter(states.column(KEY), bad).to_pylist()[:_SHOW]
    if on_invalid == "error":
        raise InvalidRowsError(
            f"{n} changed row(s) have a null or blank {text_col!r}, e.g. keys {shown}",
            hint="fix the data, or pass {opt:on_invalid='skip'}: such rows then have no "
            "vector; the watermark did not move",
        )
    log.warning("%d changed row(s) have a blank %r (e.g. %s): their vectors are removed", n, text_col, shown)
    return states.set_column(
        states.schema.get_field_index("present"), "present", pc.and_(present, pc.invert(bad))
    )


@dataclass
class _Later:
    """What a window applies after its upserts: deletes (with their tombstones), and the version
    moves of keys whose text did not change."""

    deletes: list[Upsert] = field(default_factory=list)
    current: list[tuple[str, int]] = field(default_factory=list)

    def apply(self, sink: Sink, ledger: Ledger, *, model: str, run_id: str) -> None:
        if self.deletes:
            ids = [d.point_id for d in self.deletes]
            ledger.mark_pending(sink.uri, ids, run_id=run_id)  # see writer.py: invalidate, then delete
            sink.delete(ids)
        ledger.record_tombstones(sink.uri, self.deletes, model=model, run_id=run_id)
        ledger.advance_versions(sink.uri, self.current)


def _known_states(ledger: Ledger, sink: str, ids: list[str]) -> dict[str, VectorState]:
    """What the ledger records for the window's keys, read before any write of the window.

    Why up front: keys are unique after collapse, so no batch's write changes another batch's
    state, and looked up between writes the queries wait behind the writer's sink and ledger work
    (at 1M points, 5% churn on PostgreSQL: 4.7 s of a 14 s window, 0.5 s read first).
    """
    known: dict[str, VectorState] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        known.update(ledger.lookup(sink, ids[start : start + _LOOKUP_CHUNK]))
    return known


def _apply_batch(
    run: WatchRun,
    states: pa.Table,
    ids: list[str],
    model: str,
    known: dict[str, VectorState],
    submit: Callable[[PointRows], object],
    later: _Later,
) -> None:
    """Guard each key, then hand upserts to the writer (sink, then ledger) and keep deletes for later."""
    keys: list[str] = states.column(KEY).to_pylist()
    texts: list[str | None] = states.column(TEXT).to_pylist()
    present: list[bool] = states.column("present").to_pylist()
    versions: list[int] = states.column(VERSION).to_pylist()
    live = [i for i, p in enumerate(present) if p]
    row_hash = dict(zip(live, content_hashes([str(texts[i]) for i in live]), strict=True))
    upserts: list[int] = []
    deletes: list[int] = []
    current: list[tuple[str, int]] = []
    for i, pid in enumerate(ids):
        state = known.get(pid)
        if state is not None and state.source_version is not None and versions[i] <= state.source_version:
            run.n_stale_skipped += 1  # the sink already reflects this key at a newer (or this) version
            continue
        if not present[i]:
            deletes.append(i)
            run.n_deleted += 1
        elif state is None or state.deleted:
            upserts.append(i)
            run.n_inserted += 1
        elif state.content_hash == row_hash[i] and state.model == model and not state.pending:
            current.append((pid, versions[i]))
            run.n_unchanged += 1
        else:
            upserts.append(i)
            run.n_updated += 1
    # Deletes and version moves are kept before the upserts are submitted: a provider failure
    # raised from submit() must not lose them from a window whose upserts partly landed.
    later.deletes.extend(Upsert(ids[i], run.source, keys[i], "", versions[i]) for i in deletes)
    later.current.extend(current)
    submit(
        PointRows(
            [ids[i] for i in upserts],
            [keys[i] for i in upserts],
            [str(texts[i]) for i in upserts],
            [row_hash[i] for i in upserts],
            [versions[i] for i in upserts],
        )
    )


def _advance_watermark(
    ledger: Ledger, run: WatchRun, source: str, sink: str, versions: list[int], floor: int, interval: bool
) -> None:
    """Move the watermark after a successful window; in interval mode only over a gap-free run of versions."""
    if interval:
        gap_free = versions == list(range(floor + 1, floor + 1 + len(versions)))
        if not versions or not gap_free:
            return
    target = run.to_version
    if target is not None and target > floor:
        ledger.set_watermark(source, sink, target, run_id=run.run_id)

"""Read a Delta table's change data feed and collapse it to the final state of each key.

Two readers produce one shape (:data:`CHANGE_SCHEMA`): ``deltalake``
(delta-rs, no JVM, the default) and Spark's ``readChangeFeed`` when a Spark
session is given. Everything after the read — ordering, collapsing, guards —
is one code path shared by both.

Memory bound: a read holds the window's change rows (key, text, change type,
version, timestamp — no other columns; pre-image texts are dropped on read)
in Arrow, so it is proportional to the rows *changed* in the window, not to
the table: a 1M-row table with 5% churn holds ~50k rows (a few MB of text).
Bound a larger backlog with ``until_version`` (the watch then advances in
steps). The collapsed keys are processed downstream in fixed-size batches.
"""

from __future__ import annotations

import array
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import ChangeFeedError, DriftError, InvalidRowsError, SourceError
from .sources.base import check_text_type, key_strings

KEY = "key"
TEXT = "text"
CHANGE_TYPE = "_change_type"
VERSION = "_commit_version"
TIMESTAMP = "_commit_timestamp"
CDF_PROPERTY = "delta.enableChangeDataFeed"

#: The one shape every reader returns (keys rendered as the text used in point ids).
CHANGE_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(CHANGE_TYPE, pa.string()),
        pa.field(VERSION, pa.int64()),
        pa.field(TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)
#: Final state per key, as returned by :func:`collapse`.
STATE_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field("present", pa.bool_()),
        pa.field(VERSION, pa.int64()),
    ]
)
# Order of change types inside one commit: the row's "gone" marks come before its new image, so a
# predicate overwrite (delete + insert of one key) ends present and a key-changing update (pre-image
# of the old key only) ends absent.
_RANK = {"update_preimage": 0, "delete": 0, "insert": 1, "update_postimage": 1}
_VACUUMED = ("not found", "no such file", "does not exist", "nosuchkey", "404")
_REBASELINE = (
    "re-baseline: run `drift watch ... --full-refresh` (a full embed of the current snapshot that "
    "re-embeds only changed texts and moves the watermark past the lost versions)"
)


def _strings(*values: str) -> pa.StringArray:
    """A string array assembled from buffers rather than converted from Python objects.

    Why: any Python→Arrow conversion (``pa.array``, ``pa.scalar``, a ``str`` or ``int`` argument
    to a compute function) makes pyarrow import pandas once per process to check for pandas
    types — ~0.4 s and ~50 MiB, which is more than a small watch window costs in total. The
    change-feed path therefore builds its constants here and uses casts instead of literals.
    """
    data = [v.encode() for v in values]
    offsets = array.array("i", accumulate(map(len, data), initial=0))
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


def _int64s(values: Collection[int]) -> pa.Array:
    """An int64 array from buffers (see :func:`_strings` for why not ``pa.array``)."""
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(array.array("q", values))])


_KNOWN_KINDS = _strings(*_RANK)
_NEW_IMAGES = _strings(*(kind for kind, rank in _RANK.items() if rank == 1))
_PREIMAGE = _strings("update_preimage")[0]
_NULL_TEXT = pa.nulls(1, pa.string())[0]
_ONE_TRUE = pc.is_null(pa.nulls(1, pa.int8()))


def preimages(kinds: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Mask of the ``update_preimage`` rows of a change-type column."""
    return pc.equal(kinds, _PREIMAGE)


@dataclass(frozen=True)
class PendingChanges:
    """Committed versions a watch has not applied yet: ``(since_version, to_version]``.

    ``since_version`` is None when the sink has no watermark (the next watch
    embeds the whole snapshot); ``n_rows`` is None unless rows were counted.
    """

    since_version: int | None
    to_version: int | None
    n_versions: int
    n_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChangeFeed(ABC):
    """A Delta table's versions, commit times and change rows, whichever engine reads them."""

    table: str

    @abstractmethod
    def latest_version(self) -> int:
        """The table's current version."""

    @abstractmethod
    def commit_times(self) -> list[tuple[int, datetime]]:
        """(version, commit time in UTC) of every commit the log still holds."""

    @abstractmethod
    def cdf_enabled(self) -> bool:
        """Whether the table's current properties enable the change data feed."""

    @abstractmethod
    def columns(self) -> list[str]:
        """The column names of the table's current schema."""

    @abstractmethod
    def _batches(self, start: int, end: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """Raw change rows of versions ``start..end`` (inclusive) with Delta's column names."""

    def read(
        self,
        start: int,
        end: int,
        *,
        key_col: str,
        text_col: str,
        versions: Collection[int] | None = None,
    ) -> pa.Table:
        """Change rows of versions ``start..end`` (inclusive) in :data:`CHANGE_SCHEMA`.

        ``versions`` keeps only those commits (interval mode). Pre-image texts
        are dropped here: they are never embedded, only their keys matter.
        """
        self._check_readable(key_col=key_col, text_col=text_col)
        parts: list[pa.Table] = []
        wanted = _int64s(sorted(versions)) if versions is not None else None
        try:
            for batch in self._batches(start, end, [key_col, text_col, CHANGE_TYPE, VERSION, TIMESTAMP]):
                normal = _normalise(batch, key_col=key_col, text_col=text_col, where=self.table)
                if wanted is not None:
                    normal = normal.filter(pc.is_in(normal.column(VERSION), value_set=wanted))
                if normal.num_rows:
                    parts.append(normal)
        except (ChangeFeedError, SourceError):
            raise
        except Exception as exc:  # delta-rs raises plain Exceptions while streaming
            raise self._explain(exc, start=start) from exc
        return pa.concat_tables(parts) if parts else CHANGE_SCHEMA.empty_table()

    def count(self, start: int, end: int, *, versions: Collection[int] | None = None) -> int:
        """Number of changed rows (pre-images not counted) in versions ``start..end``."""
        if not self.cdf_enabled():
            raise self._no_cdf()
        n = 0
        wanted = _int64s(sorted(versions)) if versions is not None else None
        try:
            for batch in self._batches(start, end, [CHANGE_TYPE, VERSION]):
                kinds = batch.column(CHANGE_TYPE).cast(pa.string())
                keep = pc.invert(preimages(kinds))
                if wanted is not None:
                    keep = pc.and_(keep, pc.is_in(batch.column(VERSION).cast(pa.int64()), value_set=wanted))
                n += pc.sum(keep.cast(pa.int64())).as_py() or 0
        except (ChangeFeedError, SourceError):
            raise
        except Exception as exc:
            raise self._explain(exc, start=start) from exc
        return n

    def versions_between(self, start: datetime, end: datetime) -> list[int]:
        """Versions whose commit time falls in ``[start, end)`` — the commits of one data interval."""
        lo, hi = _utc(start), _utc(end)
        return sorted(v for v, at in self.commit_times() if lo <= at < hi)

    def _check_readable(self, *, key_col: str, text_col: str) -> None:
        if not self.cdf_enabled():
            raise self._no_cdf()
        have = self.columns()
        missing = [c for c in (key_col, text_col) if c not in have]
        if missing:
            raise SourceError(
                f"column(s) {missing} are not in the current schema of {self.table} (columns: {have})",
                hint="if the column was renamed or replaced, pass its new name (rows rewritten by the "
                "change are re-checked, unchanged texts are not re-embedded); if it was dropped, run "
                "`drift watch ... --full-refresh` with the column you want to embed",
                table=self.table,
                columns=have,
            )

    def _no_cdf(self) -> ChangeFeedError:
        return ChangeFeedError(
            f"{self.table} has no change data feed ({CDF_PROPERTY} is not 'true')",
            hint=f"enable it (ALTER TABLE ... SET TBLPROPERTIES ('{CDF_PROPERTY}' = 'true') or "
            f"DeltaTable.alter.set_table_properties({{'{CDF_PROPERTY}': 'true'}})), then "
            "run `drift watch ... --full-refresh` once to baseline from the version it was enabled at",
            table=self.table,
        )

    def _explain(self, exc: BaseException, *, start: int) -> DriftError:
        text = str(exc)
        low = text.lower()
        if "change data" in low and "not" in low:
            return ChangeFeedError(
                f"{self.table} has no change data for versions from {start}: the change data feed was "
                f"enabled after that version ({text.strip()[:200]})",
                hint="changes from before the feed was enabled cannot be read; " + _REBASELINE,
                table=self.table,
                start_version=start,
            )
        if any(marker in low for marker in _VACUUMED):
            return ChangeFeedError(
                f"the change data of {self.table} from version {start} is gone (files vacuumed or log "
                f"cleaned up): {text.strip()[:300]}",
                hint=_REBASELINE,
                table=self.table,
                start_version=start,
            )
        if "no field named" in low or "schema" in low:
            return SourceError(
                f"cannot read the change data of {self.table} from version {start}: {text.strip()[:300]}",
                hint="check key_col/text_col against the table's current schema",
                table=self.table,
            )
        return ChangeFeedError(
            f"cannot read the change data of {self.table} from version {start}: {text.strip()[:300]}",
            hint="check the table path and permissions; if versions were vacuumed, " + _REBASELINE,
            table=self.table,
            start_version=start,
        )


class DeltaRsFeed(ChangeFeed):
    """The change data feed read with ``deltalake`` (delta-rs): no JVM, no cluster."""

    def __init__(self, table: str, *, storage_options: Mapping[str, str] | None = None) -> None:
        from .sources.delta import open_delta_table, resolve_delta

        where = resolve_delta(table)
        self.table = where.uri
        self._dt = open_delta_table(where.uri, storage_options=storage_options)

    def latest_version(self) -> int:
        self._dt.update_incremental()
        return int(self._dt.version())

    def commit_times(self) -> list[tuple[int, datetime]]:
        return [
            (int(h["version"]), datetime.fromtimestamp(h["timestamp"] / 1000, tz=UTC))
            for h in self._dt.history()
            if "version" in h and "timestamp" in h
        ]

    def cdf_enabled(self) -> bool:
        value = self._dt.metadata().configuration.get(CDF_PROPERTY)
        return str(value).strip().lower() == "true"

    def columns(self) -> list[str]:
        return [f.name for f in self._dt.schema().fields]

    def _batches(self, start: int, end: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        reader = self._dt.load_cdf(starting_version=start, ending_version=end, columns=columns)
        yield from pa.RecordBatchReader.from_stream(reader)


class SparkFeed(ChangeFeed):
    """The change data feed read by Spark (``readChangeFeed``) for a path or a catalog table.

    Spark returns the same columns as delta-rs; the window's rows are
    collected to the driver as Arrow (the same bound as the delta-rs reader).
    """

    def __init__(self, table: str, *, spark: Any) -> None:
        self.table = table
        self._spark = spark
        is_path = "/" in table or "://" in table
        self._ref = f"delta.`{table}`" if is_path else table
        self._is_path = is_path

    def _history(self, limit: int | None = None) -> list[Any]:
        sql = f"DESCRIBE HISTORY {self._ref}" + (f" LIMIT {int(limit)}" if limit else "")
        return list(self._spark.sql(sql).select("version", "timestamp").collect())

    def latest_version(self) -> int:
        return int(self._history(1)[0]["version"])

    def commit_times(self) -> list[tuple[int, datetime]]:
        return [(int(r["version"]), _utc(r["timestamp"])) for r in self._history()]

    def cdf_enabled(self) -> bool:
        rows = self._spark.sql(f"SHOW TBLPROPERTIES {self._ref}").collect()
        props = {r["key"]: r["value"] for r in rows}
        return str(props.get(CDF_PROPERTY, "")).strip().lower() == "true"

    def columns(self) -> list[str]:
        return list(self._spark.table(self._ref).columns)

    def _batches(self, start: int, end: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        reader = (
            self._spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", start)
            .option("endingVersion", end)
        )
        frame = reader.load(self.table) if self._is_path else reader.table(self.table)
        yield from frame.select(*columns).toArrow().to_batches()


def open_feed(
    table: str, *, spark: Any = None, storage_options: Mapping[str, str] | None = None
) -> ChangeFeed:
    """The table's change feed: Spark's reader when a session is given, else delta-rs."""
    if spark is not None:
        return SparkFeed(table, spark=spark)
    return DeltaRsFeed(table, storage_options=storage_options)


def collapse(changes: pa.Table) -> pa.Table:
    """Reduce change rows to the final state of each key, in :data:`STATE_SCHEMA`.

    Order is (commit version, change order within the commit): a key's
    delete/pre-image sorts before its insert/post-image of the same commit.
    So a delete then re-insert ends present, an update back and forth ends
    at the last text, and a plain update's pre-image never wins. Raises
    InvalidRowsError when one commit writes two rows with the same key.
    """
    if changes.num_rows == 0:
        return STATE_SCHEMA.empty_table()
    kinds = changes.column(CHANGE_TYPE)
    unknown = pc.unique(pc.filter(kinds, pc.invert(pc.is_in(kinds, value_set=_KNOWN_KINDS))))
    if len(unknown):
        raise ChangeFeedError(
            f"unknown change types in the change data feed: {unknown.to_pylist()}",
            hint="upgrade airflow-provider-drift; this Delta writer uses change types it does not know",
        )
    rank = pc.is_in(kinds, value_set=_NEW_IMAGES).cast(pa.int8())
    table = changes.append_column("_rank", rank)
    by = [(KEY, "ascending"), (VERSION, "ascending"), ("_rank", "ascending")]
    table = table.take(pc.sort_indices(table, sort_keys=by))
    keys, versions, ranks = table.column(KEY), table.column(VERSION), table.column("_rank")
    n = table.num_rows
    same_key = pc.equal(keys.slice(0, n - 1), keys.slice(1))
    _reject_duplicates(same_key, versions, ranks, keys)
    # One row: no pairs to compare (and combining zero chunks would convert from Python, importing pandas)
    is_last = _ONE_TRUE if n == 1 else pa.concat_arrays([pc.invert(same_key).combine_chunks(), _ONE_TRUE])
    final = table.filter(is_last)
    present = final.column("_rank").cast(pa.bool_())
    return pa.Table.from_arrays(
        [
            final.column(KEY),
            pc.if_else(present, final.column(TEXT), _NULL_TEXT),
            present,
            final.column(VERSION),
        ],
        schema=STATE_SCHEMA,
    )


def pending_changes(
    table: str,
    *,
    after_version: int | None,
    until_version: int | None = None,
    interval: tuple[datetime, datetime] | None = None,
    count_rows: bool = False,
    spark: Any = None,
    storage_options: Mapping[str, str] | None = None,
) -> PendingChanges:
    """What a watch would read now: committed versions after ``after_version`` (the watermark).

    With ``interval``, only commits whose time falls in ``[start, end)``
    count. ``after_version=None`` (no watermark yet) means the whole
    snapshot is pending. Row counts read the feed's change-type column only.
    """
    feed = open_feed(table, spark=spark, storage_options=storage_options)
    latest = feed.latest_version()
    end = latest if until_version is None else min(until_version, latest)
    if after_version is None:
        return PendingChanges(since_version=None, to_version=end, n_versions=end + 1)
    if interval is not None:
        versions = [v for v in feed.versions_between(*interval) if after_version < v <= end]
    else:
        versions = list(range(after_version + 1, end + 1))
    if not versions:
        return PendingChanges(since_version=after_version, to_version=None, n_versions=0, n_rows=0)
    n_rows = feed.count(versions[0], versions[-1], versions=versions) if count_rows else None
    return PendingChanges(
        since_version=versions[0] - 1, to_version=versions[-1], n_versions=len(versions), n_rows=n_rows
    )


def _normalise(batch: pa.RecordBatch, *, key_col: str, text_col: str, where: str) -> pa.Table:
    """Cast one raw CDF batch into CHANGE_SCHEMA (string_view → string, keys → point-id text)."""
    kinds = batch.column(CHANGE_TYPE).cast(pa.string())
    check_text_type(batch.schema.field(text_col).type, column=text_col, where=where)
    text = batch.column(text_col).cast(pa.string())
    text = pc.if_else(preimages(kinds), _NULL_TEXT, text)
    ts = batch.column(TIMESTAMP)
    ts = pc.assume_timezone(ts, "UTC") if getattr(ts.type, "tz", None) is None else ts
    return pa.table(
        [
            key_strings(batch.column(key_col)),
            text,
            kinds,
            batch.column(VERSION).cast(pa.int64()),
            ts.cast(CHANGE_SCHEMA.field(TIMESTAMP).type),
        ],
        schema=CHANGE_SCHEMA,
    )


def _reject_duplicates(same_key: Any, versions: Any, ranks: Any, keys: Any) -> None:
    n = len(keys)
    dup = pc.and_(
        same_key,
        pc.and_(
            pc.equal(versions.slice(0, n - 1), versions.slice(1)),
            pc.and_(ranks.slice(0, n - 1).cast(pa.bool_()), ranks.slice(1).cast(pa.bool_())),
        ),
    )
    if pc.any(dup).as_py():
        where = pc.filter(pa.table({"k": keys.slice(0, n - 1), "v": versions.slice(0, n - 1)}), dup)
        shown = list(zip(where.column("k").to_pylist()[:5], where.column("v").to_pylist()[:5], strict=True))
        raise InvalidRowsError(
            f"the key column is not unique: {where.num_rows} key(s) written twice in one commit, "
            f"e.g. (key, version) {shown}",
            hint="key_col must identify rows uniquely (use the primary key); deduplicate the table, then "
            "run `drift watch ... --full-refresh`",
        )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

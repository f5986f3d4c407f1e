"""Validate source rows and work out which need embedding.

Shared by embed and watch: both turn (key, text) rows into point ids and
content hashes, reject rows that cannot be embedded, and skip rows whose
sink point already holds this text under this model.

Why a pre-pass (:func:`check_input`): a duplicate key in two different
batches, or a null key or blank text in a late batch, can only be seen after
earlier batches were written. So embed first streams the key and text
columns once — bounded memory: an 8-byte hash per key, about 16 bytes per row
with the sort, ~160 MB at 10M rows — and fails before anything is written.
A source that can be read only once (a RecordBatchReader, a Spark
DataFrame) is spooled to a temporary Arrow file during that pass and the
main pass reads the spool, so both passes see the same rows.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidRowsError
from .identity import content_digests, format_point_ids, hex_hashes, point_id_digests
from .known_points import KnownPoints
from .ledger import Ledger
from .sources.base import KEY, TEXT

log = logging.getLogger(__name__)

OnInvalid = Literal["error", "skip"]
OnDuplicate = Literal["error", "keep_last"]

_SHOW = 5


@dataclass
class RowBatch:
    """Valid rows of one batch with their point-id and content-hash digests, and what needs work.

    The hex ids and hashes (``ids``, ``hashes``) are formatted on first use:
    a no-change re-run compares digests only and never needs them.
    """

    keys: list[str]
    texts: list[str]
    id_digests: np.ndarray  # S16, the point ids' bytes
    hash_digests: np.ndarray  # S32, the content hashes' bytes
    todo: list[int] = field(default_factory=list)  # positions of rows that need a vector written
    n_deduped: int = 0
    n_skipped: int = 0

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def ids(self) -> list[str]:
        return format_point_ids(self.id_digests)

    @cached_property
    def hashes(self) -> list[str]:
        return hex_hashes(self.hash_digests)

    def select(self, positions: Sequence[int]) -> tuple[list[str], list[str], list[str], list[str]]:
        """(ids, keys, texts, hashes) of the rows at ``positions``, formatting only those."""
        picked = np.asarray(positions, dtype=np.intp)
        return (
            format_point_ids(self.id_digests[picked]),
            [self.keys[i] for i in positions],
            [self.texts[i] for i in positions],
            hex_hashes(self.hash_digests[picked]),
        )


def valid_rows(
    keys: pa.Array, texts: pa.Array, *, key_col: str, text_col: str, on_invalid: OnInvalid
) -> tuple[pa.Array, pa.Array, int]:
    """Drop or reject rows with a null key, null/blank text, or a key seen twice in the batch."""
    if keys.null_count:
        raise InvalidRowsError(
            f"{keys.null_count} row(s) have a null key in column {key_col!r}",
            hint="every row needs a key: fix the data or filter them out "
            f"({{opt:filter='{key_col} IS NOT NULL'}})",
        )
    if len(keys) and pc.count_distinct(keys).as_py() != len(keys):
        counts = pc.value_counts(keys)
        dupes = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
        raise InvalidRowsError(
            f"key column {key_col!r} is not unique: {len(dupes)} duplicate(s), e.g. {dupes[:_SHOW]}",
            hint="{opt:key_col} must identify rows uniquely (use the primary key), "
            "or deduplicate the source first",
        )
    blank = blank_texts(texts)
    n_bad = pc.sum(blank.cast(pa.int64())).as_py() or 0
    if not n_bad:
        return keys, texts, 0
    if on_invalid == "error":
        shown = pc.filter(keys, blank).to_pylist()[:_SHOW]
        raise InvalidRowsError(
            f"{n_bad} row(s) have a null or blank {text_col!r}, e.g. keys {shown}",
            hint=f"fix the data, filter ({{opt:filter='{text_col} IS NOT NULL'}}), "
            "or pass {opt:on_invalid='skip'}",
        )
    good = pc.invert(blank)
    return pc.filter(keys, good), pc.filter(texts, good), n_bad


def plan_rows(
    keys: pa.Array,
    texts: pa.Array,
    *,
    source: str,
    sink: str,
    model: str,
    ledger: Ledger,
    dedup: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    current: KnownPoints | None = None,
) -> RowBatch:
    """Validate a batch and mark the rows whose point is missing, stale, or from another model.

    :param current: the sink's current points read up front (see known_points.py); without
        it each batch asks the ledger.
    """
    good_keys, good_texts, n_skipped = valid_rows(
        keys, texts, key_col=key_col, text_col=text_col, on_invalid=on_invalid
    )
    key_list: list[str] = good_keys.to_pylist()
    text_list: list[str] = good_texts.to_pylist()
    rows = RowBatch(
        key_list,
        text_list,
        point_id_digests(source, key_list),
        content_digests(text_list),
        n_skipped=n_skipped,
    )
    if not dedup:
        rows.todo = list(range(len(rows)))
    elif current is not None:
        rows.todo = current.stale(rows.id_digests, rows.hash_digests)
    else:
        rows.todo = ledger.stale_positions(sink, model, rows.ids, rows.hashes)
    rows.n_deduped = len(rows) - len(rows.todo)
    return rows


@dataclass
class CheckedInput:
    """A source whose whole input passed :func:`check_input`; ``batches()`` is the main pass."""

    source: Any
    n_rows: int = 0
    #: earlier rows of a repeated key, left out under ``on_duplicate="keep_last"``
    n_duplicates: int = 0
    _drop: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _spool: Path | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in _read(self.source, self._spool):
            n = batch.num_rows
            if self._drop.size:
                lo, hi = np.searchsorted(self._drop, [offset, offset + n])
                if hi > lo:
                    keep = np.ones(n, dtype=bool)
                    keep[self._drop[lo:hi] - offset] = False
                    batch = batch.filter(pa.array(keep))
            offset += n
            yield batch

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _read(source: Any, spool: Path | None) -> Iterator[pa.RecordBatch]:
    if spool is None:
        yield from source.batches()
        return
    with pa.memory_map(str(spool)) as f:
        reader = pa.ipc.open_file(f)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def check_input(
    source: Any,
    *,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
    on_duplicate: OnDuplicate = "error",
) -> CheckedInput:
    """Stream the whole input once and reject it before any write: null keys, blank texts
    (unless ``on_invalid="skip"``), and keys that repeat anywhere (unless ``on_duplicate="keep_last"``,
    which keeps each key's last row and counts the others)."""
    if on_duplicate not in ("error", "keep_last"):
        raise InvalidRowsError(
            f"on_duplicate must be 'error' or 'keep_last', got {on_duplicate!r}",
            hint="pass on_duplicate='keep_last' to keep each key's last row",
        )
    out = CheckedInput(source)
    writer: pa.ipc.RecordBatchFileWriter | None = None
    if getattr(source, "_read_once", False) or getattr(source, "kind", None) == "spark":
        out._tmp = tempfile.TemporaryDirectory(prefix="drift-spool-")
        out._spool = Path(out._tmp.name) / "rows.arrow"
    try:
        hashes: list[np.ndarray] = []
        for batch in source.batches():
            if out._spool is not None:
                if writer is None:
                    writer = pa.ipc.new_file(str(out._spool), batch.schema)
                writer.write_batch(batch)
            keys = batch.column(KEY)
            if keys.null_count:
                raise InvalidRowsError(
                    f"{keys.null_count} row(s) have a null key in column {key_col!r}"
                    f" (rows {out.n_rows}..{out.n_rows + batch.num_rows - 1}); nothing was written",
                    hint="every row needs a key: fix the data or filter them out"
                    f" (filter='{key_col} IS NOT NULL')",
                )
            if on_invalid == "error":
                _reject_blank(batch, text_col=text_col)
            hashes.append(np.fromiter(map(hash, keys.to_pylist()), dtype=np.int64, count=batch.num_rows))
            out.n_rows += batch.num_rows
        if writer is not None:
            writer.close()
            writer = None
        all_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.int64)
        del hashes
        order = np.argsort(all_hashes, kind="stable")
        ranked = all_hashes[order]
        del all_hashes
        repeated = ranked[1:] == ranked[:-1]
        if not repeated.any():
            return out
        candidates = set(ranked[1:][repeated].tolist())  # a 64-bit hash can collide: compare keys
        del ranked, order
        out._drop = _duplicates(out, candidates, key_col=key_col, on_duplicate=on_duplicate)
        out.n_duplicates = int(out._drop.size)
        if out.n_duplicates:
            log.warning(
                "on_duplicate='keep_last': %d earlier row(s) of repeated keys left out", out.n_duplicates
            )
        return out
    except BaseException:
        if writer is not None:
            writer.close()
        out.close()
        raise


def blank_texts(text: pa.Array) -> pa.Array:
    """Mask of the texts that cannot be embedded: null, empty or whitespace only (never null itself)."""
    empty = pc.invert(pc.utf8_length(pc.utf8_trim_whitespace(text)).cast(pa.bool_()))
    return pc.or_kleene(pc.is_null(text), empty)


def _reject_blank(batch: pa.RecordBatch, *, text_col: str) -> None:
    blank = blank_texts(batch.column(TEXT))
    n = pc.sum(blank.cast(pa.int64())).as_py() or 0
    if n:
        shown = pc.filter(batch.column(KEY), blank).to_pylist()[:_SHOW]
        raise InvalidRowsError(
            f"{n} row(s) have a null or blank {text_col!r}, e.g. keys {shown}; nothing was written",
            hint=f"fix the data, filter (filter='{text_col} IS NOT NULL'), or pass on_invalid='skip'",
        )


def _duplicates(
    out: CheckedInput, candidates: set[int], *, key_col: str, on_duplicate: OnDuplicate
) -> np.ndarray:
    """Second pass over the rows whose key hash repeats: exact duplicates, and the rows to drop."""
    positions: dict[str, list[int]] = {}
    offset = 0
    for batch in _read(out.source, out._spool):
        for i, k in enumerate(batch.column(KEY).to_pylist()):
            if hash(k) in candidates:
                positions.setdefault(k, []).append(offset + i)
        offset += batch.num_rows
    repeated = {k: p for k, p in positions.items() if len(p) > 1}
    if not repeated:
        return np.empty(0, dtype=np.int64)
    if on_duplicate == "error":
        n_rows = sum(len(p) for p in repeated.values())
        raise InvalidRowsError(
            f"key column {key_col!r} is not unique: {len(repeated)} key(s) appear more than once"
            f" ({n_rows} rows), e.g. {list(repeated)[:_SHOW]}; nothing was written",
            hint="key_col must identify rows uniquely (use the primary key), deduplicate the source, or "
            "pass on_duplicate='keep_last' to keep each key's last row",
        )
    return np.sort(np.fromiter((q for p in repeated.values() for q in p[:-1]), dtype=np.int64))

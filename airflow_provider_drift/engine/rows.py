"""Validate a batch of source rows and work out which need embedding.

Shared by embed and watch: both turn (key, text) rows into point ids and
content hashes, reject rows that cannot be embedded, and skip rows whose
sink point already holds this text under this model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidRowsError
from .identity import content_hashes, point_ids
from .ledger import Ledger

OnInvalid = Literal["error", "skip"]

_SHOW = 5


@dataclass
class RowBatch:
    """Valid rows of one batch with their ids and hashes, and what needs work."""

    keys: list[str]
    texts: list[str]
    ids: list[str]
    hashes: list[str]
    todo: list[int]  # positions of rows that need a vector written
    n_deduped: int = 0
    n_skipped: int = 0


def validate_rows(
    keys: Sequence[str | None],
    texts: Sequence[str | None],
    *,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
) -> tuple[list[str], list[str], int]:
    """Drop or reject rows with a null key, null/blank text, or a key seen twice in the batch."""
    null_keys = [i for i, k in enumerate(keys) if k is None]
    if null_keys:
        raise InvalidRowsError(
            f"{len(null_keys)} row(s) have a null key in column {key_col!r}",
            hint="every row needs a key: fix the data or filter them out "
            f"({{opt:filter='{key_col} IS NOT NULL'}})",
        )
    seen: dict[str, int] = {}
    dupes: list[str] = []
    for i, k in enumerate(keys):
        if k in seen:
            dupes.append(k)  # type: ignore[arg-type]
        seen[k] = i  # type: ignore[index]
    if dupes:
        raise InvalidRowsError(
            f"key column {key_col!r} is not unique: {len(dupes)} duplicate(s), e.g. {dupes[:_SHOW]}",
            hint="{opt:key_col} must identify rows uniquely (use the primary key), "
            "or deduplicate the source first",
        )
    bad = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if bad and on_invalid == "error":
        shown = [keys[i] for i in bad[:_SHOW]]
        raise InvalidRowsError(
            f"{len(bad)} row(s) have a null or blank {text_col!r}, e.g. keys {shown}",
            hint=f"fix the data, filter ({{opt:filter='{text_col} IS NOT NULL'}}), "
            "or pass {opt:on_invalid='skip'}",
        )
    if not bad:
        return list(keys), list(texts), 0  # type: ignore[arg-type]
    bad_set = set(bad)
    good = [i for i in range(len(keys)) if i not in bad_set]
    return [keys[i] for i in good], [texts[i] for i in good], len(bad)  # type: ignore[misc]


def plan_rows(
    keys: Sequence[str | None],
    texts: Sequence[str | None],
    *,
    source: str,
    sink: str,
    model: str,
    ledger: Ledger,
    dedup: bool,
    key_col: str,
    text_col: str,
    on_invalid: OnInvalid,
) -> RowBatch:
    """Validate a batch and mark the rows whose point is missing, stale, or from another model."""
    good_keys, good_texts, n_skipped = validate_rows(
        keys, texts, key_col=key_col, text_col=text_col, on_invalid=on_invalid
    )
    ids = point_ids(source, good_keys)
    hashes = content_hashes(good_texts)
    if dedup:
        todo = ledger.stale_positions(sink, model, ids, hashes)
    else:
        todo = list(range(len(ids)))
    return RowBatch(good_keys, good_texts, ids, hashes, todo, len(ids) - len(todo), n_skipped)

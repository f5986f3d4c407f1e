"""Points as pgvector table rows: the column layout, payload mapping, and binary COPY encoding.

The engine's payload fields get typed columns so the table is useful from
SQL (``WHERE source_key = ...``); anything else goes to the ``extra`` jsonb
column. Payloads round-trip exactly as Qdrant stores them: a field given as
``None`` or with a type its column cannot hold (an int key in a text column)
is also recorded in ``extra``, which wins on read.

The COPY stream is encoded here rather than with ``Copy.write_row``: one
numpy conversion for all vectors and one ``join`` per batch keep the client
cost well below the server's, which is what lets the upsert path run close to
a raw COPY.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from ..errors import SinkError
from . import check_vectors
from .base import (
    PAYLOAD_HASH,
    PAYLOAD_KEY,
    PAYLOAD_MODEL,
    PAYLOAD_RUN,
    PAYLOAD_SOURCE,
    PAYLOAD_TEXT,
    PAYLOAD_VERSION,
    PointBatch,
    StoredPoint,
)

#: payload field -> text column
TEXT_COLUMNS: tuple[tuple[str, str], ...] = (
    (PAYLOAD_KEY, "source_key"),
    (PAYLOAD_SOURCE, "source"),
    (PAYLOAD_HASH, "content_hash"),
    (PAYLOAD_MODEL, "model"),
    (PAYLOAD_RUN, "run_id"),
)
VERSION_COLUMN = "source_version"
TEXT_COLUMN = "text"
EXTRA_COLUMN = "extra"
CORE_FIELDS = frozenset({k for k, _ in TEXT_COLUMNS} | {PAYLOAD_VERSION, PAYLOAD_TEXT})

#: columns written by an upsert, in COPY order (``updated_at`` is set by the server)
WRITE_COLUMNS: tuple[str, ...] = (
    "id",
    "embedding",
    *(c for _, c in TEXT_COLUMNS),
    VERSION_COLUMN,
    TEXT_COLUMN,
    EXTRA_COLUMN,
)
#: columns read back to rebuild a payload, in SELECT order (after id and, optionally, embedding)
PAYLOAD_COLUMNS: tuple[str, ...] = WRITE_COLUMNS[2:]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">iq")  # field length 8, then the value
_ROW_HEAD = struct.pack(">h", len(WRITE_COLUMNS)) + _INT32.pack(16)
_MISSING = object()
_INT64_RANGE = (-(2**63), 2**63 - 1)


def check_batch(batch: PointBatch, *, dim: int, uri: str) -> tuple[np.ndarray, list[bytes]]:
    """Validate a whole batch before anything is sent; return float32 vectors and 16-byte ids.

    The checks of ``sinks.validate_batch`` with a faster id parse: this runs
    on every row of every bulk load.
    """
    return check_vectors(batch, dim=dim, uri=uri), uuid_bytes(batch.ids, uri=uri)


def uuid_bytes(ids: Sequence[str], *, uri: str) -> list[bytes]:
    """The 16-byte form of each id; a non-UUID id fails the whole batch."""
    if all(p.__class__ is str and len(p) == 36 and p.count("-") == 4 for p in ids):
        try:  # canonical ids (what point_id makes): one hex decode for the whole batch
            raw = bytes.fromhex("".join(ids).replace("-", ""))
            if len(raw) == 16 * len(ids):
                return [raw[i : i + 16] for i in range(0, len(raw), 16)]
        except ValueError:
            pass  # find and name the bad id below
    out = []
    for point in ids:
        try:
            out.append(uuid.UUID(str(point)).bytes)
        except ValueError:
            raise SinkError(
                f"point id {point!r} is not a UUID string; nothing of this batch was written to {uri}",
                hint="derive ids with identity.point_id(source, key)",
            ) from None
    return out


def last_wins(ids: list[bytes]) -> list[int] | None:
    """Indices to keep when an id repeats within a batch (the last one wins, as in sequential upserts)."""
    last = {pid: i for i, pid in enumerate(ids)}
    return None if len(last) == len(ids) else sorted(last.values())


def encode_rows(
    ids: Sequence[bytes], vectors: np.ndarray, payloads: Sequence[dict[str, Any]], *, uri: str
) -> bytes:
    """Binary COPY rows for columns :data:`WRITE_COLUMNS` (frame them with SIGNATURE and TRAILER).

    Each row's fixed part (field count, id, vector) is laid out by numpy in
    one go; the payload columns are encoded column by column, each distinct
    value once. Payloads with fields outside the typed columns, or values of
    other types, take the row-by-row path that also fills ``extra``.
    """
    n, dim = vectors.shape
    width = len(_ROW_HEAD) + 16 + 8 + 4 * dim
    fixed = np.empty((n, width), dtype=np.uint8)
    fixed[:, : len(_ROW_HEAD)] = np.frombuffer(_ROW_HEAD, dtype=np.uint8)
    at = len(_ROW_HEAD)
    fixed[:, at : at + 16] = np.frombuffer(b"".join(ids), dtype=np.uint8).reshape(n, 16)
    fixed[:, at + 16 : at + 24] = np.frombuffer(struct.pack(">ihh", 4 + 4 * dim, dim, 0), dtype=np.uint8)
    fixed[:, at + 24 :] = np.ascontiguousarray(vectors, dtype=">f4").view(np.uint8).reshape(n, 4 * dim)
    flat = memoryview(fixed.data).cast("B")
    heads = [flat[i * width : (i + 1) * width] for i in range(n)]
    columns = _fast_columns(payloads, uri)
    if columns is not None:
        return b"".join(chain.from_iterable(zip(heads, *columns, strict=True)))
    pieces: list[bytes | memoryview] = []
    for head, payload in zip(heads, payloads, strict=True):
        pieces.append(head)
        pieces.extend(_payload_fields(payload, uri))
    return b"".join(pieces)


def _fast_columns(payloads: Sequence[dict[str, Any]], uri: str) -> list[list[bytes]] | None:
    """The encoded payload columns if every value fits its typed column as is, else None."""
    if not all(p.keys() <= CORE_FIELDS for p in payloads):
        return None
    columns: list[list[bytes]] = []
    all_none: dict[str, None] = {}  # fields given as None in every row: the same ``extra`` for all
    for field in (*(f for f, _c in TEXT_COLUMNS), PAYLOAD_VERSION, PAYLOAD_TEXT):
        values = [p.get(field, _MISSING) for p in payloads]
        encoded: dict[Any, bytes] = {}
        distinct = dict.fromkeys(values)
        if None in distinct:
            if len(distinct) > 1:
                return None
            all_none[field] = None
        for value in distinct:
            if value is _MISSING or value is None:
                encoded[value] = _NULL
            elif field == PAYLOAD_VERSION:
                if value.__class__ is not int or not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
                    return None
                encoded[value] = _INT64.pack(8, value)
            elif value.__class__ is str:
                encoded[value] = _text(value, uri)
            else:
                return None
        columns.append(list(map(encoded.__getitem__, values)))
    columns.append([_jsonb(all_none, uri) if all_none else _NULL] * len(payloads))  # extra
    return columns


def _payload_fields(payload: dict[str, Any], uri: str) -> list[bytes]:
    """One row's payload columns; values a typed column cannot hold as is are kept in ``extra`` too."""
    out: list[bytes] = []
    extra: dict[str, Any] = {}
    for field, _column in TEXT_COLUMNS:
        value = payload.get(field, _MISSING)
        if value.__class__ is str:
            out.append(_text(value, uri))
            continue
        if value is not _MISSING:
            extra[field] = value
        out.append(_NULL if value is _MISSING or value is None else _text(str(value), uri))
    version = payload.get(PAYLOAD_VERSION, _MISSING)
    if version.__class__ is int and _INT64_RANGE[0] <= version <= _INT64_RANGE[1]:
        out.append(_INT64.pack(8, version))
    else:
        out.append(_NULL)
        if version is not _MISSING:
            extra[PAYLOAD_VERSION] = version
    text = payload.get(PAYLOAD_TEXT, _MISSING)
    if text.__class__ is str:
        out.append(_text(text, uri))
    else:
        out.append(_NULL)
        if text is not _MISSING:
            extra[PAYLOAD_TEXT] = text
    extra.update((k, v) for k, v in payload.items() if k not in CORE_FIELDS)
    out.append(_jsonb(extra, uri) if extra else _NULL)
    return out


def to_payload(row: Sequence[Any]) -> dict[str, Any]:
    """Rebuild a payload from the values of :data:`PAYLOAD_COLUMNS`."""
    payload: dict[str, Any] = {}
    for (field, _column), value in zip(TEXT_COLUMNS, row, strict=False):
        if value is not None:
            payload[field] = value
    version, text, extra = row[len(TEXT_COLUMNS) :]
    if version is not None:
        payload[PAYLOAD_VERSION] = int(version)
    if text is not None:
        payload[PAYLOAD_TEXT] = text
    if extra:
        payload.update(extra)
    return payload


def to_point(row: Sequence[Any], *, with_vector: bool) -> StoredPoint:
    """A StoredPoint from ``id, [embedding], *PAYLOAD_COLUMNS``."""
    vector = None
    if with_vector:
        vector = np.asarray(row[1].to_numpy(), dtype=np.float32)
        row = (row[0], *row[2:])
    return StoredPoint(id=str(row[0]), payload=to_payload(row[1:]), vector=vector)


def _text(value: str, uri: str) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SinkError(
            f"a payload text is not valid Unicode ({exc.reason}); nothing of this batch was written to {uri}",
            hint="clean the source text (lone surrogates cannot be stored)",
        ) from None
    return _INT32.pack(len(data)) + data


def _jsonb(extra: dict[str, Any], uri: str) -> bytes:
    try:
        data = (
            b"\x01" + json.dumps(extra, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()
        )
    except (TypeError, ValueError) as exc:
        raise SinkError(
            f"a payload cannot be stored as JSON ({exc}); nothing of this batch was written to {uri}",
            hint="keep payload values to JSON types (str, int, float, bool, None, lists, dicts)",
        ) from None
    return _INT32.pack(len(data)) + data

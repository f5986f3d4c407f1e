"""The Source port: a named, versioned stream of (key, text) record batches in bounded memory.

Every reader (Arrow, pandas, Parquet, Delta, Spark) yields raw batches holding
at least the key, text and extra columns; this module turns them into the one
shape the engine consumes and cuts them to ``batch_size`` rows. Keys become
the canonical strings of :func:`..identity.key_to_str` (so ``7`` and ``"7"``
name the same point); text nulls are kept so the caller can report them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, SourceError
from ..identity import key_to_str

SourceKind = Literal["arrow", "pandas", "parquet", "delta", "spark"]

KEY = "key"
TEXT = "text"

_INT_LIMIT = 2.0**63


@dataclass(frozen=True)
class RowShape:
    """Which input columns become ``key``, ``text`` and the pass-through extras."""

    key_col: str
    text_col: str
    extra_cols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for label, value in (("key_col", self.key_col), ("text_col", self.text_col)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{label} must be a column name, got {value!r}", hint=f"pass {label}='...'")
        clash = {KEY, TEXT} & set(self.extra_cols)
        if clash:
            raise ConfigError(
                f"extra_cols may not include {sorted(clash)}: the output already has 'key' and 'text'",
                hint="rename the column in the source or leave it out of {opt:extra_cols}",
            )

    @property
    def input_columns(self) -> list[str]:
        """Return the distinct input columns to read, key and text first."""
        return list(dict.fromkeys([self.key_col, self.text_col, *self.extra_cols]))

    def check_names(self, available: Sequence[str], *, where: str) -> None:
        """Raise SourceError for the first wanted column the source lacks."""
        for role, col in [("key", self.key_col), ("text", self.text_col)] + [
            ("extra", c) for c in self.extra_cols
        ]:
            if col not in available:
                raise SourceError(
                    f"{role} column {col!r} not found in {where}; available columns: {', '.join(available)}",
                    hint=f"pass the right {{opt:{role}_col}}" if role != "extra" else "fix {opt:extra_cols}",
                    column=col,
                    available=list(available),
                )

    def check_schema(self, schema: pa.Schema, *, where: str) -> None:
        """Check names and that the text column holds strings."""
        self.check_names(schema.names, where=where)
        check_text_type(schema.field(self.text_col).type, column=self.text_col, where=where)

    def to_output(self, batch: pa.RecordBatch, *, where: str) -> pa.RecordBatch:
        """Return ``batch`` as columns key (string), text (string), then the extras."""
        key = key_strings(batch.column(self.key_col))
        text_type = batch.schema.field(self.text_col).type
        check_text_type(text_type, column=self.text_col, where=where)
        text = _as_string(batch.column(self.text_col))
        arrays = [key, text] + [_plain(batch.column(c)) for c in self.extra_cols]
        return pa.RecordBatch.from_arrays(arrays, names=[KEY, TEXT, *self.extra_cols])


def check_text_type(dtype: pa.DataType, *, column: str, where: str) -> None:
    if _is_stringish(dtype) or pa.types.is_null(dtype):
        return
    raise SourceError(
        f"text column {column!r} in {where} is {dtype}, not a string",
        hint="cast it to a string column first (SQL: CAST(col AS STRING); pandas: df[col].astype('string'))",
        column=column,
        type=str(dtype),
    )


def key_strings(arr: pa.Array) -> pa.Array:
    """Render keys as canonical key strings (see identity.key_to_str), vectorised where it is exact."""
    dtype = arr.type
    if pa.types.is_dictionary(dtype):
        return key_strings(arr.dictionary_decode())
    if _is_stringish(dtype) or pa.types.is_null(dtype):
        return _as_string(arr)
    if pa.types.is_integer(dtype):
        return pc.cast(arr, pa.string())
    if pa.types.is_floating(dtype):
        finite = arr.drop_null()
        if len(finite) == 0 or (
            pc.all(pc.equal(finite, pc.floor(finite))).as_py() and pc.max(pc.abs(finite)).as_py() < _INT_LIMIT
        ):
            return pc.cast(pc.cast(arr, pa.int64()), pa.string())
    # Rare key types (bool, decimal, dates, binary, non-integral floats): exact but per value.
    return pa.array([None if v is None else key_to_str(v) for v in arr.to_pylist()], type=pa.string())


def _is_stringish(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        return _is_stringish(dtype.value_type)
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


def _as_string(arr: pa.Array) -> pa.Array:
    if arr.type == pa.string():
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return pc.cast(arr, pa.string())


def _plain(arr: pa.Array) -> pa.Array:
    """Cast view/large string types to plain strings so every source yields the same types."""
    if pa.types.is_string_view(arr.type) or pa.types.is_large_string(arr.type):
        return pc.cast(arr, pa.string())
    return arr


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Yield batches of exactly ``size`` rows (the last may be shorter), holding at most ~2 batches."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if not pending and batch.num_rows == size:
            yield batch
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < size:
            continue
        table = pa.Table.from_batches(pending)
        offset = 0
        while held - offset >= size:
            yield table.slice(offset, size).combine_chunks().to_batches()[0]
            offset += size
        rest = table.slice(offset)
        pending = rest.combine_chunks().to_batches() if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


class Source(ABC):
    """A readable table of rows with a stable identity.

    ``name`` is part of every point id, so it must not change between runs over
    the same data: for files and Delta tables it is the normalised absolute
    location (``delta:///abs/path``), for in-memory data the user's ``source=``.
    ``version`` is the Delta snapshot read (None for sources without versions).
    """

    kind: SourceKind

    def __init__(
        self,
        *,
        name: str,
        shape: RowShape,
        batch_size: int,
        version: int | None = None,
        estimated_rows: int | None = None,
        filter: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", hint="pass batch_size=10_000")
        self.name = name
        self.shape = shape
        self.batch_size = batch_size
        self.version = version
        self.estimated_rows = estimated_rows
        self.filter = filter
        self._closed = False

    @property
    def columns(self) -> list[str]:
        """Return the output column names of every batch."""
        return [KEY, TEXT, *self.shape.extra_cols]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Yield batches of at most ``batch_size`` rows with columns key, text, *extra_cols."""
        if self._closed:
            raise SourceError(f"source {self.name!r} is closed", hint="open the source again")
        where = self.describe()
        shaped = (self.shape.to_output(b, where=where) for b in self._raw_batches())
        yield from rebatch(shaped, self.batch_size)

    def describe(self) -> str:
        """Return a short human label for messages."""
        return f"{self.kind} source {self.name!r}"

    @abstractmethod
    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        """Yield filtered batches holding at least the shape's input columns."""

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} version={self.version!r}>"


def local_path_name(scheme: str, path: str | os.PathLike[str]) -> str:
    """Return ``scheme:///abs/path`` for a local path: the canonical source name of a file or table."""
    absolute = os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))
    return f"{scheme}://{absolute}"


def uri_name(scheme: str, uri: str) -> str:
    """Return the canonical name of a location given as a local path or a remote URI."""
    if uri.startswith("file://"):
        return local_path_name(scheme, uri[len("file://") :])
    if "://" in uri:
        return f"{scheme}+{uri.rstrip('/')}"
    return local_path_name(scheme, uri)

"""Read in-memory data: pyarrow Tables, RecordBatchReaders and pandas DataFrames.

The data is already in the caller's memory, so these sources only promise not
to copy it whole: pandas frames convert ``batch_size`` rows at a time, and a
reader is consumed as it streams (once: a second ``batches()`` call fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import SourceError
from .base import RowShape, Source
from .predicate import Predicate, parse_predicate

if TYPE_CHECKING:
    import pandas as pd


def _filtered(batches: Iterator[pa.RecordBatch], predicate: Predicate | None) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch.filter(predicate.expression) if predicate is not None else batch


class ArrowSource(Source):
    """Stream a pyarrow Table or RecordBatchReader."""

    kind = "arrow"

    def __init__(
        self,
        data: pa.Table | pa.RecordBatchReader,
        *,
        name: str,
        shape: RowShape,
        batch_size: int,
        filter: str | None = None,
    ) -> None:
        self._data = data
        self._read_once = isinstance(data, pa.RecordBatchReader)
        self._consumed = False
        super().__init__(
            name=name,
            shape=shape,
            batch_size=batch_size,
            estimated_rows=data.num_rows if isinstance(data, pa.Table) and filter is None else None,
            filter=filter,
        )
        shape.check_schema(data.schema, where=self.describe())
        self._predicate = parse_predicate(filter, data.schema, where=self.describe()) if filter else None

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        if self._read_once:
            if self._consumed:
                raise SourceError(
                    f"{self.describe()} is a RecordBatchReader that was already read",
                    hint="a reader streams once; pass a pyarrow Table (or a new reader) to read again",
                )
            self._consumed = True
            raw: Iterator[pa.RecordBatch] = iter(self._data)
        else:
            # max_chunksize keeps one huge chunk from becoming one huge batch downstream.
            raw = iter(self._data.to_batches(max_chunksize=self.batch_size))
        yield from _filtered(raw, self._predicate)

    def close(self) -> None:
        if self._read_once and not self._consumed:
            self._data.close()
        super().close()


class PandasSource(Source):
    """Stream a pandas DataFrame, converting ``batch_size`` rows to Arrow at a time.

    A ``key_col`` that names the frame's index (``df.index.name``) is read from the index.
    """

    kind = "pandas"

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        name: str,
        shape: RowShape,
        batch_size: int,
        filter: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            shape=shape,
            batch_size=batch_size,
            estimated_rows=len(frame) if filter is None else None,
            filter=filter,
        )
        columns = [str(c) for c in frame.columns]
        index_names = [n for n in frame.index.names if n is not None]
        self._from_index = [c for c in shape.input_columns if c not in columns and c in index_names]
        shape.check_names(columns + self._from_index, where=self.describe())
        text_dtype = frame.index.dtype if shape.text_col in self._from_index else frame[shape.text_col].dtype
        if getattr(text_dtype, "kind", "O") in "biufcmM":
            raise SourceError(
                f"text column {shape.text_col!r} in {self.describe()} is {text_dtype}, not a string",
                hint="cast it first: df[col] = df[col].astype('string')",
                column=shape.text_col,
            )
        self._frame = frame
        self._predicate: Predicate | None = None
        self._read_columns = shape.input_columns
        if filter:
            # Object columns need values to infer a type; the first rows stand for the frame.
            schema = self._arrow_schema(frame.head(1000))
            self._predicate = parse_predicate(filter, schema, where=self.describe())
            self._read_columns = list(dict.fromkeys([*shape.input_columns, *sorted(self._predicate.columns)]))

    def _arrow_schema(self, sample: pd.DataFrame) -> pa.Schema:
        frame = sample.reset_index() if self._from_index else sample
        return pa.Schema.from_pandas(frame, preserve_index=False)

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        frame = self._frame
        step = self.batch_size
        for start in range(0, len(frame), step):
            chunk: Any = frame.iloc[start : start + step]
            if self._from_index:
                chunk = chunk.reset_index()
            chunk = chunk[self._read_columns]
            try:
                batch = pa.RecordBatch.from_pandas(chunk, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                last = start + len(chunk) - 1
                raise SourceError(
                    f"rows {start}..{last} of {self.describe()} cannot be converted to Arrow: {exc}",
                    hint="give each column one type (e.g. df[col].astype('string'))",
                ) from exc
            batch = batch.replace_schema_metadata(None)
            if self._predicate is not None:
                batch = batch.filter(self._predicate.expression)
            yield batch

"""Stream a Spark DataFrame (classic or Spark Connect) to the driver one partition at a time.

Never ``toPandas()``/``collect()``: ``toLocalIterator`` fetches a partition
(two with prefetch) at a time, so driver memory is bounded by partition
size, not table size. pyspark is imported by nobody here: the DataFrame comes
from the caller, recognised by its class's module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..errors import SourceError
from .base import RowShape, Source
from .predicate import SUPPORTED, parse_predicate

_STRING_TYPES = {"string", "varchar", "char"}


def is_spark_dataframe(obj: object) -> bool:
    """Return True for pyspark DataFrames (classic and Connect) without importing pyspark."""
    cls = type(obj)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pyspark.")


def spark_table_name(table: str) -> str:
    """Return the source name of a Spark catalog table: ``spark:db.table`` (backticks dropped)."""
    return "spark:" + table.replace("`", "").strip()


def read_spark_table(spark: Any, table: str, *, version: int | None = None) -> Any:
    """Return ``spark.table(table)`` (at Delta ``version`` if given), as a SourceError if it is missing."""
    try:
        reader = spark.read
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.table(table)
    except Exception as exc:
        raise SourceError(
            f"cannot read Spark table {table!r}: {_first_line(exc)}",
            hint="check the table name (catalog.schema.table) and that the session can see it",
            table=table,
        ) from exc


class SparkSource(Source):
    """Stream a Spark DataFrame through the driver in bounded batches."""

    kind = "spark"

    def __init__(
        self,
        frame: Any,
        *,
        name: str,
        shape: RowShape,
        batch_size: int,
        filter: str | None = None,
        version: int | None = None,
        prefetch_partitions: bool = True,
    ) -> None:
        super().__init__(name=name, shape=shape, batch_size=batch_size, version=version, filter=filter)
        self._prefetch = prefetch_partitions
        shape.check_names(list(frame.columns), where=self.describe())
        if filter:
            predicate = parse_predicate(filter, _arrow_schema(frame), where=self.describe())
            try:
                frame = frame.where(predicate.sql("spark"))
                _ = frame.schema  # Spark Connect analyses lazily: force it so a bad filter fails here.
            except Exception as exc:
                raise SourceError(
                    f"invalid filter {filter!r} on {self.describe()}: {_first_line(exc)}",
                    hint=f"filters support {SUPPORTED}",
                    filter=filter,
                ) from exc
        columns = shape.input_columns
        frame = frame.select(*[frame[c] for c in columns])
        text_type = frame.schema[shape.text_col].dataType
        if text_type.typeName() not in _STRING_TYPES and text_type.typeName() != "void":
            spark_type = text_type.simpleString()
            raise SourceError(
                f"text column {shape.text_col!r} in {self.describe()} is {spark_type}, not a string",
                hint="cast it first: df.withColumn(col, F.col(col).cast('string'))",
                column=shape.text_col,
            )
        self._frame = frame
        self._columns = columns

    @property
    def frame(self) -> Any:
        """The filtered DataFrame of the input columns (key and text first), for the Spark runner."""
        return self._frame

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        columns = self._columns
        values: list[list[Any]] = [[] for _ in columns]
        rows = self._frame.toLocalIterator(prefetchPartitions=self._prefetch)
        try:
            for row in rows:
                for i, value in enumerate(row):
                    values[i].append(value)
                if len(values[0]) >= self.batch_size:
                    yield _to_batch(columns, values)
                    values = [[] for _ in columns]
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        if values[0]:
            yield _to_batch(columns, values)


def _arrow_schema(frame: Any) -> pa.Schema:
    """The DataFrame's schema as Arrow's, for the filter's column and type checks."""
    from pyspark.sql.pandas.types import to_arrow_type

    fields = []
    for f in frame.schema.fields:
        try:
            dtype = to_arrow_type(f.dataType)
        except Exception:  # a type Arrow cannot hold (e.g. interval): such a column cannot be filtered
            dtype = pa.null()
        fields.append(pa.field(f.name, dtype))
    return pa.schema(fields)


def _to_batch(columns: list[str], values: list[list[Any]]) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_arrays([pa.array(v) for v in values], names=columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SourceError(
            f"Spark rows cannot be converted to Arrow: {exc}",
            hint="give each selected column one type",
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

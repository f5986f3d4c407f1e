"""Open whatever the user gives (frame, file, Delta table, Spark) as one streaming Source.

Every source yields record batches with columns ``key`` (canonical key
strings), ``text`` (nulls kept) and the requested extras, at most
``batch_size`` rows each, without materialising the table. The source
``name`` is part of every point id: files and tables name themselves by their
normalised location (``delta:///abs/path``, ``parquet:///abs/path``,
``spark:db.table``); in-memory data must be named with ``source=``. When a
location is given as ``df``, an explicit ``source=`` overrides its name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, SourceError
from .base import KEY, TEXT, RowShape, Source, SourceKind, local_path_name, rebatch, uri_name

__all__ = [
    "KEY",
    "TEXT",
    "RowShape",
    "Source",
    "SourceKind",
    "open_source",
    "rebatch",
    "source_name",
]

_IN_MEMORY_NEEDS_NAME = "in-memory data needs source='name' because point ids derive from (source, key)"


def open_source(
    df: Any = None,
    *,
    source: str | None = None,
    key_col: str,
    text_col: str,
    filter: str | None = None,
    batch_size: int = 10_000,
    spark: Any = None,
    extra_cols: Sequence[str] = (),
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Source:
    """Return a Source over ``df`` (or over the table named by ``source`` when ``df`` is None).

    ``df``: pyarrow Table or RecordBatchReader, pandas DataFrame, any object
    exporting an Arrow stream (``__arrow_c_stream__``, e.g. polars), a Parquet
    or Delta path/URI (str or Path; ``delta://``, ``parquet://`` and
    ``file://`` prefixes accepted), a ``deltalake.DeltaTable``, or a Spark
    DataFrame. With ``df=None``, ``source`` is a Delta/Parquet location, or a
    Spark catalog table when ``spark`` is given and no such path exists.
    ``filter`` is a SQL boolean expression in one grammar for every source
    (see :mod:`.predicate`): the whole string must parse, or a SourceError says
    at which character it stopped. ``version`` pins a Delta snapshot.
    """
    shape = RowShape(key_col=key_col, text_col=text_col, extra_cols=tuple(extra_cols))
    filter = filter.strip() if isinstance(filter, str) and filter.strip() else None
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise ConfigError(f"source must be a non-empty string, got {source!r}", hint="pass source='name'")
    common: dict[str, Any] = {"shape": shape, "batch_size": batch_size, "filter": filter}

    if df is None:
        if source is None:
            raise ConfigError(
                "nothing to read: neither df nor source was given",
                hint="pass df=<frame or path> or source='path/to/delta_table'",
            )
        return _open_location(
            source, name=None, spark=spark, version=version, storage_options=storage_options, common=common
        )
    if isinstance(df, (str, os.PathLike)):
        return _open_location(
            df, name=source, spark=spark, version=version, storage_options=storage_options, common=common
        )
    if _module_of(df).startswith("deltalake") and hasattr(df, "table_uri"):
        from .delta import DeltaSource, name_of_table, open_delta_table

        table = df
        if version is not None and version != df.version():
            table = open_delta_table(df.table_uri, version=version, storage_options=storage_options)
        return DeltaSource(table, name=source or name_of_table(df), **common)
    if version is not None:
        raise ConfigError(
            f"version={version} applies to Delta tables only, not to {type(df).__name__}",
            hint="drop version=, or pass the Delta table's path",
        )
    if _is_spark_dataframe(df):
        from .spark import SparkSource

        return SparkSource(df, name=_require_name(source), **common)

    import pyarrow as pa

    if isinstance(df, (pa.Table, pa.RecordBatchReader)):
        from .arrow import ArrowSource

        return ArrowSource(df, name=_require_name(source), **common)
    if _module_of(df).startswith("pandas") and hasattr(df, "iloc"):
        from .arrow import PandasSource

        return PandasSource(df, name=_require_name(source), **common)
    if isinstance(df, pa.RecordBatch):
        from .arrow import ArrowSource

        return ArrowSource(pa.Table.from_batches([df]), name=_require_name(source), **common)
    if hasattr(df, "__arrow_c_stream__"):
        from .arrow import ArrowSource

        name = _require_name(source)
        return ArrowSource(pa.RecordBatchReader.from_stream(df), name=name, **common)
    raise ConfigError(
        f"cannot read a {type(df).__module__}.{type(df).__name__} as a source",
        hint="pass a pyarrow Table/RecordBatchReader, a pandas or Spark DataFrame, a deltalake.DeltaTable, "
        "or the path of a Parquet file or Delta table",
    )


def source_name(location: str | os.PathLike[str]) -> str:
    """Return the canonical name a location gets as a source (what point ids of its rows derive from)."""
    loc = os.fspath(location)
    if loc.startswith(("parquet://", "parquet+")):
        return uri_name("parquet", _strip_parquet_prefix(loc))
    from .delta import resolve_delta

    if loc.startswith(("delta://", "delta+")) or os.path.isdir(os.path.join(_local(loc), "_delta_log")):
        return resolve_delta(loc).name
    if "://" in loc and not loc.startswith("file://"):
        return resolve_delta(loc).name
    if os.path.exists(_local(loc)):
        return local_path_name("parquet", _local(loc))
    return resolve_delta(loc).name


def _open_location(
    location: str | os.PathLike[str],
    *,
    name: str | None,
    spark: Any,
    version: int | None,
    storage_options: Mapping[str, str] | None,
    common: dict[str, Any],
) -> Source:
    from .delta import DeltaSource, open_delta_table, resolve_delta
    from .parquet import is_parquet_location

    loc = os.fspath(location)
    if loc.startswith(("parquet://", "parquet+")):
        return _parquet(_strip_parquet_prefix(loc), name, version, storage_options, common)
    forced_delta = loc.startswith(("delta://", "delta+"))
    target = resolve_delta(loc)
    remote = "://" in target.uri
    if not forced_delta:
        if remote:
            from deltalake import DeltaTable

            options = dict(storage_options) if storage_options else None
            if not DeltaTable.is_deltatable(target.uri, storage_options=options):
                return _parquet(target.uri, name, version, storage_options, common)
        elif not os.path.isdir(os.path.join(target.uri, "_delta_log")):
            if os.path.exists(target.uri):
                if is_parquet_location(target.uri):
                    return _parquet(target.uri, name, version, storage_options, common)
                raise SourceError(
                    f"{loc!r} is neither a Delta table (no _delta_log) nor Parquet data",
                    hint="point at a Delta table folder, a .parquet file, or a folder of Parquet files",
                    location=loc,
                )
            if spark is not None and os.sep not in loc and "/" not in loc:
                from .spark import SparkSource, read_spark_table, spark_table_name

                frame = read_spark_table(spark, loc, version=version)
                return SparkSource(frame, name=name or spark_table_name(loc), version=version, **common)
            raise SourceError(
                f"no table at {loc!r} (looked for {target.uri})",
                hint="pass the path of a Delta table or Parquet data"
                + ("" if spark is not None else "; for a catalog table also pass spark=<SparkSession>"),
                location=loc,
            )
    table = open_delta_table(target.uri, version=version, storage_options=storage_options)
    return DeltaSource(table, name=name or target.name, **common)


def _parquet(
    location: str,
    name: str | None,
    version: int | None,
    storage_options: Mapping[str, str] | None,
    common: dict[str, Any],
) -> Source:
    from .parquet import ParquetSource

    if version is not None:
        raise ConfigError(
            f"version={version} applies to Delta tables, but {location!r} is Parquet",
            hint="drop version= or point at a Delta table",
        )
    local = _local(location)
    return ParquetSource(
        location if "://" in local else local,
        name=name or uri_name("parquet", location),
        storage_options=storage_options,
        **common,
    )


def _strip_parquet_prefix(loc: str) -> str:
    if loc.startswith("parquet+"):
        return loc[len("parquet+") :]
    return loc[len("parquet://") :]


def _local(loc: str) -> str:
    loc = loc[len("file://") :] if loc.startswith("file://") else loc
    return os.path.expanduser(loc)


def _require_name(source: str | None) -> str:
    if source is None:
        raise ConfigError(_IN_MEMORY_NEEDS_NAME, hint="pass source='tickets' (any stable name for this data)")
    return source


def _module_of(obj: object) -> str:
    return type(obj).__module__ or ""


def _is_spark_dataframe(obj: object) -> bool:
    from .spark import is_spark_dataframe

    return is_spark_dataframe(obj)

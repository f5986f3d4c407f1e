"""Read a table location as a Spark DataFrame, named as the local runner names it.

Point ids derive from (source name, key), so a table embedded once by the
local runner and once on Spark must get one name: the location's canonical
name (:func:`..sources.source_name`), or ``spark:db.table`` for a catalog table.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SourceError
from ..sources import source_name
from ..sources.spark import read_spark_table, spark_table_name


def spark_frame(spark: Any, location: str) -> tuple[Any, str]:
    """(DataFrame, source name) of a Delta table or Parquet path, or of a catalog table name."""
    local = location[len("file://") :] if location.startswith("file://") else location
    is_path = "://" in location or os.sep in local or "/" in local or os.path.exists(local)
    if not is_path:
        return read_spark_table(spark, location), spark_table_name(location)
    delta = location.startswith(("delta://", "delta+")) or os.path.isdir(os.path.join(local, "_delta_log"))
    path = local.split("://", 1)[1] if local.startswith(("delta://", "parquet://")) else local
    try:
        frame = spark.read.format("delta").load(path) if delta else spark.read.parquet(path)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise SourceError(
            f"Spark cannot read {location!r}: {text[0] if text else type(exc).__name__}",
            hint="check the path; a Delta table needs delta-spark on the session's classpath",
            location=location,
        ) from exc
    return frame, source_name(location)

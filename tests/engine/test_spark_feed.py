"""watch() through the Spark reader gives exactly what the delta-rs reader gives.

delta-spark needs its jars from Maven Central, which this machine cannot
reach (ENVIRONMENT.md), so a real ``readChangeFeed`` cannot run here. The
stand-in session below answers the four things ``SparkFeed`` asks Spark —
``DESCRIBE HISTORY``, ``SHOW TBLPROPERTIES``, the table's columns and
``readChangeFeed`` — with real Spark DataFrames built from deltalake's
answers for the same table, in delta-spark's column names and types. So the
SQL and options SparkFeed sends are checked, and everything after the read
runs exactly as it would against a cluster.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from airflow_provider_drift.engine.changes import SparkFeed, open_feed
from airflow_provider_drift.engine.errors import ChangeFeedError
from airflow_provider_drift.engine.watch import watch

from .cdc_helpers import MODEL, CountingProvider, assert_collection_equals_table, sink_state, write

pytestmark = pytest.mark.spark

_PATH_REF = re.compile(r"delta\.`(?P<path>[^`]+)`")


class DeltaSparkStandIn:
    """The slice of a delta-spark session that SparkFeed uses, answered from deltalake."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.read = _ChangeFeedReader(self)
        self.queries: list[str] = []

    def sql(self, query: str) -> Any:
        self.queries.append(query)
        if m := re.fullmatch(r"DESCRIBE HISTORY (?P<ref>\S+)(?: LIMIT (?P<limit>\d+))?", query):
            history = _table(m["ref"]).history(int(m["limit"]) if m["limit"] else None)
            rows = [(h["version"], datetime.fromtimestamp(h["timestamp"] / 1000, UTC)) for h in history]
            return self.spark.createDataFrame(rows, "version long, timestamp timestamp")
        if m := re.fullmatch(r"SHOW TBLPROPERTIES (?P<ref>\S+)", query):
            config = _table(m["ref"]).metadata().configuration
            return self.spark.createDataFrame(
                sorted(config.items()) or [("", "")], "key string, value string"
            )
        raise AssertionError(f"SparkFeed sent SQL delta-spark was not asked for here: {query}")

    def table(self, ref: str) -> Any:
        return self.spark.createDataFrame(_arrow(_table(ref).to_pyarrow_table()))


class _ChangeFeedReader:
    """``spark.read.format("delta").option(...).load(path)``: readChangeFeed's rows and columns."""

    def __init__(self, session: DeltaSparkStandIn) -> None:
        self._session = session
        self.options: dict[str, str] = {}

    def format(self, fmt: str) -> _ChangeFeedReader:
        assert fmt == "delta"
        self.options = {}
        return self

    def option(self, key: str, value: Any) -> _ChangeFeedReader:
        self.options[key] = str(value)
        return self

    def load(self, path: str) -> Any:
        assert self.options["readChangeFeed"] == "true"
        start, end = int(self.options["startingVersion"]), int(self.options["endingVersion"])
        reader = DeltaTable(path).load_cdf(starting_version=start, ending_version=end)
        changes = pa.RecordBatchReader.from_stream(reader).read_all()
        return self._session.spark.createDataFrame(_arrow(changes))


def _table(ref: str) -> DeltaTable:
    m = _PATH_REF.fullmatch(ref)
    assert m, f"SparkFeed should address a path table as delta.`path`, got {ref}"
    return DeltaTable(m["path"])


def _arrow(table: pa.Table) -> pa.Table:
    """In Spark's types: delta-rs answers string_view and unsigned ints, Spark has string and long."""
    spark_type = {pa.string_view(): pa.string(), pa.uint64(): pa.int64(), pa.uint32(): pa.int64()}
    fields = [pa.field(f.name, spark_type.get(f.type, f.type)) for f in table.schema]
    return table.cast(pa.schema(fields))


@pytest.fixture
def delta_spark(spark: Any) -> DeltaSparkStandIn:
    return DeltaSparkStandIn(spark)


def test_spark_and_delta_rs_readers_see_the_same_changes(
    tmp_path: Path, delta_spark: DeltaSparkStandIn
) -> None:
    table = write(tmp_path / "t", {"id": [1, 2, 3], "body": ["a", "b", "c"]})
    DeltaTable(table).update(predicate="id = 2", updates={"body": "'b2'"})
    DeltaTable(table).delete("id = 3")
    spark_feed, rs_feed = open_feed(table, spark=delta_spark), open_feed(table)
    assert isinstance(spark_feed, SparkFeed)
    assert spark_feed.latest_version() == rs_feed.latest_version() == 2
    assert [v for v, _ in spark_feed.commit_times()] == [v for v, _ in rs_feed.commit_times()]
    assert spark_feed.cdf_enabled() and set(spark_feed.columns()) == {"id", "body"}

    def rows(feed: Any) -> list[tuple[Any, ...]]:
        got = feed.read(0, 2, key_col="id", text_col="body").to_pylist()
        return sorted(tuple(sorted(r.items())) for r in got)

    assert rows(spark_feed) == rows(rs_feed)


def test_watch_with_a_spark_session_keeps_the_collection_equal_to_the_table(
    tmp_path: Path, delta_spark: DeltaSparkStandIn
) -> None:
    table = write(tmp_path / "t", {"id": list(range(6)), "body": [f"ticket {i}" for i in range(6)]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    provider = CountingProvider()

    def run() -> Any:
        return watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, provider=provider,
                     spark=delta_spark)  # fmt: skip

    first = run()
    assert first.n_embedded == 6
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'ticket 1, reopened'"})
    DeltaTable(table).delete("id = 4")
    write(table, {"id": [9], "body": ["ticket 9"]})
    second = run()
    assert (second.n_updated, second.n_deleted, second.n_inserted) == (1, 1, 1)
    assert sorted(provider.texts_sent[6:]) == ["ticket 1, reopened", "ticket 9"]  # only what changed
    assert_collection_equals_table(sink, table, first.source)
    assert any(q.startswith("DESCRIBE HISTORY delta.`") for q in delta_spark.queries)
    assert len(sink_state(sink)) == 6


def test_a_spark_table_without_change_data_feed_is_named(
    tmp_path: Path, delta_spark: DeltaSparkStandIn
) -> None:
    from deltalake import write_deltalake

    table = str(tmp_path / "plain")
    write_deltalake(table, pa.table({"id": [1], "body": ["x"]}))
    with pytest.raises(ChangeFeedError, match="no change data feed"):
        open_feed(table, spark=delta_spark).read(0, 0, key_col="id", text_col="body")

"""One strict filter grammar for every source: the whole string parses, or the error says where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from airflow_provider_drift.engine.errors import SourceError
from airflow_provider_drift.engine.sources import open_source

from .fault_helpers import assert_clean_failure, run_drift

N = 40
TABLE = pa.table(
    {
        "id": pa.array(range(N), pa.int64()),
        "text": [f"it's row {i}" if i % 5 == 0 else f"row {i}" for i in range(N)],
        "team name": ["red" if i % 2 else "blue" for i in range(N)],
    }
)

Opener = Callable[[str], Any]


@pytest.fixture(scope="module")
def openers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Opener]:
    root = tmp_path_factory.mktemp("filter-sources")
    pq.write_table(TABLE, root / "t.parquet")
    write_deltalake(str(root / "delta"), TABLE)

    def opened(data: Any, **kw: Any) -> Opener:
        return lambda sql: open_source(data, key_col="id", text_col="text", filter=sql, **kw)

    return {
        "arrow": opened(TABLE, source="t"),
        "pandas": opened(TABLE.to_pandas(), source="t"),
        "parquet": opened(str(root / "t.parquet")),
        "delta": opened(str(root / "delta")),
    }


def keys(source: Any) -> list[str]:
    return sorted(k for b in source.batches() for k in b.column("key").to_pylist())


# (filter, 1-based character where parsing stops, words of the message)
BAD = [
    ("id < 5 ANDD id > 2", 8, "unexpected 'ANDD'"),
    ("id < 5)", 7, "unexpected ')'"),
    ("(id < 5", 8, "expected ')'"),
    ("id < 5 AND", 11, "ends too early"),
    ("id<5;DROP TABLE t", 5, "cannot read ';'"),
    ("id @ 4", 4, "cannot read '@'"),
    ("text = 'open", 8, "unterminated quote"),
    ("nope > 1", 1, "no column 'nope'"),
    ("lower(text) = 'a'", 1, "functions such as lower()"),
    ("id BETWEEN 1 OR 2", 14, "expected AND in BETWEEN"),
    ("id = 'x'", 1, "cannot compare int64"),
]


@pytest.mark.parametrize(("sql", "at", "says"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("kind", ["arrow", "pandas", "parquet", "delta"])
def test_a_filter_that_does_not_parse_whole_fails_the_same_on_every_source(
    openers: dict[str, Opener], kind: str, sql: str, at: int, says: str
) -> None:
    with pytest.raises(SourceError) as caught:
        openers[kind](sql)
    error = caught.value
    assert f"invalid filter {sql!r}" in error.message and says in error.message
    assert f"at character {at} " in error.message
    assert error.fields["filter"] == sql and error.fields["position"] == at - 1
    assert error.hint is not None and "[NOT] BETWEEN" in error.hint


def test_type_clash_between_columns_fails_at_open_not_mid_scan(openers: dict[str, Opener]) -> None:
    for opener in openers.values():
        with pytest.raises(SourceError, match="the types do not match"):
            opener("text = id")


GOOD = {
    "id < 5": set(range(5)),
    "id < 5 AND id > 2": {3, 4},
    "id = 1.5": set(),
    "id == 7 OR NOT id >= 2": {0, 1, 7},
    "text = 'it''s row 10'": {10},
    "text LIKE 'it''s%' AND id BETWEEN 10 AND 30": {10, 15, 20, 25, 30},
    "\"team name\" = 'red' AND id IN (1, 2, 3, 4)": {1, 3},
    "id NOT IN (0, 1) AND id < 4 AND text IS NOT NULL": {2, 3},
    "id IN (1.5, 2, 3.0)": {2, 3},
}


@pytest.mark.parametrize("sql", list(GOOD))
def test_a_valid_filter_selects_the_same_rows_everywhere(openers: dict[str, Opener], sql: str) -> None:
    want = sorted(str(i) for i in GOOD[sql])
    for kind, opener in openers.items():
        assert keys(opener(sql)) == want, kind


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_gets_the_same_grammar(spark: Any) -> None:
    frame = spark.createDataFrame(TABLE.to_pandas())
    for sql, want in GOOD.items():
        src = open_source(frame, source="s", key_col="id", text_col="text", filter=sql)
        assert keys(src) == sorted(str(i) for i in want), sql
    with pytest.raises(SourceError, match=r"at character 8 .*unexpected 'ANDD'"):
        open_source(frame, source="s", key_col="id", text_col="text", filter="id < 5 ANDD id > 2")


def test_cli_trailing_text_in_a_delta_filter_exits_2(tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "delta"), TABLE)
    result = run_drift(
        [
            "embed",
            "--table",
            str(tmp_path / "delta"),
            "--text-col",
            "text",
            "--key-col",
            "id",
            "--shadow-mode",
            "--sink",
            f"qdrant+local://{tmp_path}/q/docs",
            "--filter",
            "id < 5 ANDD id > 2",
        ],
        env={"DRIFT_HOME": str(tmp_path / "home")},
    )
    assert_clean_failure(result, code=2, says="at character 8")
    assert not (tmp_path / "q" / "docs").exists()

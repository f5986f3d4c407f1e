"""Bad input anywhere in a source fails the run before the first write, whatever the batch boundaries.

Before the pre-pass, a key repeated in two batches became one point with
n_written counting both rows, and a null key or blank text in a late batch
failed the run after the earlier batches were written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import InvalidRowsError
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sinks import open_sink
from tests.engine.cdc_helpers import CountingProvider, write

N = 1000
BATCH = 100


def rows(
    *, dup_at: int | None = None, null_key_at: int | None = None, blank_at: int | None = None
) -> dict[str, Any]:
    ids: list[int | None] = list(range(N))
    bodies: list[str | None] = [f"row {i}" for i in range(N)]
    if dup_at is not None:
        ids[dup_at] = 3  # key 3 is row 3 (first batch) and row dup_at (a late batch)
    if null_key_at is not None:
        ids[null_key_at] = None
    if blank_at is not None:
        bodies[blank_at] = "   "
    return {"id": ids, "body": bodies}


def as_source(
    kind: str, data: dict[str, Any], tmp_path: Path, spark: Any = None
) -> tuple[Any, dict[str, Any]]:
    table = pa.table(data)
    if kind == "delta":
        return write(tmp_path / "t", data), {}
    if kind == "parquet":
        path = tmp_path / "t.parquet"
        pq.write_table(table, path, row_group_size=BATCH)
        return str(path), {}
    if kind == "arrow":
        return table, {"source": "mem"}
    if kind == "reader":
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=BATCH)), {
            "source": "mem"
        }
    if kind == "pandas":
        return table.to_pandas(), {"source": "mem"}
    assert kind == "spark"
    return spark.createDataFrame(table.to_pandas()), {"source": "sparkmem"}


KINDS = ["delta", "parquet", "arrow", "reader", "pandas", "spark"]


def _run(
    tmp_path: Path, kind: str, data: dict[str, Any], request: pytest.FixtureRequest, **kw: Any
) -> tuple[Any, CountingProvider, str]:
    spark = request.getfixturevalue("spark") if kind == "spark" else None
    df, extra = as_source(kind, data, tmp_path, spark)
    provider = CountingProvider()
    sink = f"qdrant+local://{tmp_path}/q/c"
    done = embed(
        df, text_col="body", key_col="id", model=provider.model, sink=sink, provider=provider,
        batch_size=BATCH, spark=spark, **extra, **kw,
    )  # fmt: skip
    return done, provider, sink


def _points(sink: str) -> dict[str, dict[str, Any]]:
    s = open_sink(sink)
    try:
        return {p.id: p.payload for page in s.scroll() for p in page}
    finally:
        s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_repeated_in_another_batch_fails_before_any_write(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(
        InvalidRowsError, match=r"not unique: 1 key\(s\) appear more than once \(2 rows\), e\.g\. \['3'\]"
    ) as info:
        _run(tmp_path, kind, rows(dup_at=N - 5), request)
    assert "nothing was written" in str(info.value) and "keep_last" in (info.value.hint or "")
    assert _points(f"qdrant+local://{tmp_path}/q/c") == {}
    with Ledger() as led:
        assert [r["status"] for r in led.recent_runs()] == ["failed"]


@pytest.mark.parametrize("kind", KINDS)
def test_keep_last_keeps_the_last_row_of_a_repeated_key_and_counts_the_other(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    data = rows(dup_at=N - 5)
    done, provider, sink = _run(tmp_path, kind, data, request, on_duplicate="keep_last")
    assert (done.n_rows_processed, done.n_skipped, done.n_written, done.n_embedded) == (N, 1, N - 1, N - 1)
    points = _points(sink)
    assert len(points) == N - 1
    assert points[point_id(done.source, "3")]["content_hash"] == content_hash(f"row {N - 5}")
    assert "row 3" not in provider.texts_sent


@pytest.mark.parametrize(
    ("bad", "match"),
    [({"null_key_at": N - 1}, "null key"), ({"blank_at": N - 1}, "null or blank")],
)
@pytest.mark.parametrize("kind", ["delta", "reader"])
def test_a_bad_row_in_the_last_batch_fails_before_any_write(
    tmp_path: Path, kind: str, bad: dict[str, int], match: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(InvalidRowsError, match=match) as info:
        _run(tmp_path, kind, rows(**bad), request)
    assert "nothing was written" in str(info.value)
    assert _points(f"qdrant+local://{tmp_path}/q/c") == {}


def test_on_invalid_skip_still_skips_blank_texts_in_late_batches(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    done, _, sink = _run(tmp_path, "reader", rows(blank_at=N - 1), request, on_invalid="skip")
    assert (done.n_written, done.n_skipped) == (N - 1, 1)
    assert len(_points(sink)) == N - 1


def test_drift_embed_exits_2_on_a_repeated_key_unless_told_to_keep_the_last_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_drift.cli import main as drift

    table, _ = as_source("parquet", rows(dup_at=N - 5), tmp_path)
    argv = ["embed", "--table", table, "--text-col", "body", "--key-col", "id", "--shadow-mode",
            "--batch-size", str(BATCH), "--sink", f"qdrant+local://{tmp_path}/q/c"]  # fmt: skip
    assert drift(argv) == 2
    assert "not unique" in capsys.readouterr().err
    assert _points(f"qdrant+local://{tmp_path}/q/c") == {}
    assert drift([*argv, "--on-duplicate", "keep_last"]) == 0
    assert len(_points(f"qdrant+local://{tmp_path}/q/c")) == N - 1

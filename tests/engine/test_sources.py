"""The source layer: every input kind streams the same (key, text, extras) batches with a stable name."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.engine.errors import ConfigError, SourceError
from airflow_provider_drift.engine.identity import key_to_str
from airflow_provider_drift.engine.sources import Source, open_source, rebatch, source_name
from airflow_provider_drift.engine.sources.sample import (
    SAMPLE_SCHEMA,
    sample_ticket_batches,
    write_sample_tickets,
)

N = 2_000
# Filters exercising every construct of the Arrow/Parquet subset; Delta runs them through DataFusion.
FILTERS = [
    "updated_at >= '2026-02-01'",
    "product = 'Acme Mail' AND ticket_id < 1500",
    "product IN ('Acme API', 'Acme Sync') OR NOT ticket_id > 100",
    "ticket_id BETWEEN 10 AND 20",
    "body LIKE 'Hi team,%'",
    "product NOT IN ('Acme Mail') AND updated_at < TIMESTAMP '2026-01-15 00:00:00+00:00'",
    "(ticket_id > 1000 OR ticket_id <= 3) AND body IS NOT NULL",
]


def read_all(src: Source) -> pa.Table:
    with src:
        batches = list(src.batches())
    return pa.Table.from_batches(batches) if batches else pa.table({"key": [], "text": []})


def rows(src: Source) -> dict[str, str | None]:
    table = read_all(src)
    return dict(zip(table.column("key").to_pylist(), table.column("text").to_pylist(), strict=True))


@pytest.fixture(scope="module")
def tickets_table() -> pa.Table:
    return pa.Table.from_batches(list(sample_ticket_batches(N)))


@pytest.fixture(scope="module")
def tickets_delta(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_sample_tickets(tmp_path_factory.mktemp("delta") / "tickets", n=N)


@pytest.fixture(scope="module")
def tickets_parquet(tmp_path_factory: pytest.TempPathFactory, tickets_table: pa.Table) -> str:
    root = tmp_path_factory.mktemp("parquet") / "tickets"
    ds.write_dataset(
        tickets_table,
        root,
        format="parquet",
        partitioning=["product"],
        partitioning_flavor="hive",
        max_rows_per_group=300,
        max_rows_per_file=700,
    )
    return str(root)


def expected(table: pa.Table, keep: pa.Array | None = None) -> dict[str, str | None]:
    if keep is not None:
        table = table.filter(keep)
    keys = [str(k) for k in table.column("ticket_id").to_pylist()]
    return dict(zip(keys, table.column("body").to_pylist(), strict=True))


# -- Delta -----------------------------------------------------------------------------------------


def test_delta_streams_every_row_in_bounded_batches(tickets_delta: str, tickets_table: pa.Table) -> None:
    src = open_source(
        tickets_delta, key_col="ticket_id", text_col="body", batch_size=300, extra_cols=["product"]
    )
    assert src.name == f"delta://{Path(tickets_delta).resolve()}"
    assert (src.kind, src.version, src.estimated_rows) == ("delta", 0, N)
    batches = list(src.batches())
    assert [b.num_rows for b in batches[:-1]] == [300] * (len(batches) - 1)
    assert batches[-1].num_rows == N - 300 * (len(batches) - 1)
    assert batches[0].schema == pa.schema(
        [("key", pa.string()), ("text", pa.string()), ("product", pa.string())]
    )
    got = pa.Table.from_batches(batches)
    assert dict(zip(got["key"].to_pylist(), got["text"].to_pylist(), strict=True)) == expected(tickets_table)
    by_key = dict(zip(got["key"].to_pylist(), got["product"].to_pylist(), strict=True))
    assert by_key == dict(
        zip(
            map(str, tickets_table["ticket_id"].to_pylist()),
            tickets_table["product"].to_pylist(),
            strict=True,
        )
    )


def test_every_spelling_of_a_delta_table_has_one_name(
    tickets_delta: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(tickets_delta)
    monkeypatch.chdir(path.parent)
    spellings: list[Any] = [
        tickets_delta,
        path,
        tickets_delta + "/",
        f"delta://{tickets_delta}",
        f"file://{tickets_delta}",
        "tickets",  # relative to the working directory
        "./tickets/../tickets",
        DeltaTable(tickets_delta),
    ]
    names = {open_source(s, key_col="ticket_id", text_col="body").name for s in spellings}
    names.add(open_source(source=tickets_delta, key_col="ticket_id", text_col="body").name)
    names.add(source_name(tickets_delta))
    names.add(source_name("tickets"))
    assert names == {f"delta://{path.resolve()}"}
    # The name read back as a location opens the same table.
    again = open_source(source=f"delta://{path.resolve()}", key_col="ticket_id", text_col="body")
    assert again.name == f"delta://{path.resolve()}"


def test_explicit_source_overrides_a_location_name(tickets_delta: str) -> None:
    src = open_source(tickets_delta, source="support.tickets", key_col="ticket_id", text_col="body")
    assert src.name == "support.tickets"


def test_delta_version_pinning(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"id": [1, 2], "body": ["a", "b"]}))
    write_deltalake(path, pa.table({"id": [3], "body": ["c"]}), mode="append")
    DeltaTable(path).update(predicate="id = 1", updates={"body": "'a2'"})

    assert rows(open_source(path, key_col="id", text_col="body", version=0)) == {"1": "a", "2": "b"}
    assert rows(open_source(path, key_col="id", text_col="body", version=1)) == {"1": "a", "2": "b", "3": "c"}
    latest = open_source(path, key_col="id", text_col="body")
    assert latest.version == 2
    assert rows(latest) == {"1": "a2", "2": "b", "3": "c"}
    old = open_source(DeltaTable(path), key_col="id", text_col="body", version=0)
    assert (old.version, rows(old)) == (0, {"1": "a", "2": "b"})

    with pytest.raises(SourceError, match=r"version 7 .*latest is 2") as err:
        open_source(path, key_col="id", text_col="body", version=7)
    assert err.value.hint


def test_delta_filter_and_bad_filter(tickets_delta: str, tickets_table: pa.Table) -> None:
    src = open_source(tickets_delta, key_col="ticket_id", text_col="body", filter="product = 'Acme Mail'")
    assert src.estimated_rows is None
    assert rows(src) == expected(tickets_table, pc.equal(tickets_table["product"], "Acme Mail"))

    for bad in ["no_such_col > 1", "ticket_id >>> 2", "body"]:
        with pytest.raises(SourceError, match="invalid filter") as err:
            open_source(tickets_delta, key_col="ticket_id", text_col="body", filter=bad)
        assert err.value.fields["filter"] == bad
        assert bad in str(err.value)


def test_delta_keeps_null_texts_and_renders_keys(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"id": pa.array([7, -1, 2**40], pa.int64()), "body": ["x", None, ""]}))
    assert rows(open_source(path, key_col="id", text_col="body")) == {"7": "x", "-1": None, str(2**40): ""}


# -- filters agree across engines ----------------------------------------------------------------


@pytest.mark.parametrize("sql", FILTERS)
def test_filter_selects_the_same_rows_everywhere(
    sql: str, tickets_delta: str, tickets_parquet: str, tickets_table: pa.Table
) -> None:
    via_delta = rows(open_source(tickets_delta, key_col="ticket_id", text_col="body", filter=sql))
    assert via_delta, "each filter should select something"
    assert len(via_delta) < N, "each filter should drop something"
    others = [
        open_source(tickets_parquet, key_col="ticket_id", text_col="body", filter=sql),
        open_source(tickets_table, source="t", key_col="ticket_id", text_col="body", filter=sql),
        open_source(
            tickets_table.to_reader(max_chunksize=333),
            source="t",
            key_col="ticket_id",
            text_col="body",
            filter=sql,
        ),
        open_source(tickets_table.to_pandas(), source="t", key_col="ticket_id", text_col="body", filter=sql),
    ]
    for src in others:
        assert rows(src) == via_delta, src.kind


def test_arrow_filter_errors_name_the_filter(tickets_table: pa.Table) -> None:
    cases = {
        "nope = 1": "no column 'nope'",
        "ticket_id = 'abc'": "cannot compare",
        "lower(product) = 'x'": "functions",
        "ticket_id >": "ends too early",
        "product": "not a boolean",
        "ticket_id = 1 extra": "unexpected",
        "ticket_id NOT 3": "unexpected 'NOT'",
    }
    for sql, why in cases.items():
        with pytest.raises(SourceError, match="invalid filter") as err:
            open_source(tickets_table, source="t", key_col="ticket_id", text_col="body", filter=sql)
        assert why in str(err.value), sql
        assert err.value.fields["filter"] == sql
        assert "IS [NOT] NULL" in (err.value.hint or "")


def test_arrow_filter_null_semantics_follow_sql() -> None:
    table = pa.table({"id": [1, 2, 3, 4], "t": ["a", "b", "c", "d"], "g": ["x", None, "y", "x"]})

    def keys(sql: str) -> list[str]:
        return sorted(rows(open_source(table, source="t", key_col="id", text_col="t", filter=sql)))

    assert keys("g = 'x'") == ["1", "4"]
    assert keys("g != 'x'") == ["3"]  # NULL != 'x' is NULL: dropped
    assert keys("g NOT IN ('x')") == ["3"]
    assert keys("NOT (g = 'x')") == ["3"]
    assert keys("g IS NULL") == ["2"]
    assert keys("g IS NULL OR id >= 4") == ["2", "4"]
    assert keys("id = -1 OR \"g\" = 'y'") == ["3"]
    assert keys("g ILIKE 'X'") == ["1", "4"]
    assert keys("id NOT BETWEEN 2 AND 3") == ["1", "4"]


def test_timestamp_and_date_literals_coerce() -> None:
    utc = dt.UTC
    table = pa.table(
        {
            "id": [1, 2, 3],
            "t": ["a", "b", "c"],
            "ts": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=utc), dt.datetime(2026, 1, 1, 12, tzinfo=utc), None],
                pa.timestamp("us", tz="UTC"),
            ),
            "naive": pa.array([dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2), None], pa.timestamp("ms")),
            "d": pa.array([dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]),
        }
    )

    def keys(sql: str) -> list[str]:
        return sorted(rows(open_source(table, source="t", key_col="id", text_col="t", filter=sql)))

    assert keys("ts > '2026-01-01'") == ["2"]
    assert keys("ts >= '2026-01-01T13:00:00+02:00'") == ["2"]
    assert keys("naive >= '2026-01-02'") == ["2"]
    assert keys("naive < TIMESTAMP '2026-01-01 12:00:00Z'") == ["1"]
    assert keys("d >= DATE '2026-01-02'") == ["2", "3"]
    assert keys("d = '2026-01-03'") == ["3"]


# -- Parquet ---------------------------------------------------------------------------------------


def test_parquet_file_and_partitioned_directory(
    tmp_path: Path, tickets_parquet: str, tickets_table: pa.Table
) -> None:
    src = open_source(
        tickets_parquet, key_col="ticket_id", text_col="body", batch_size=250, extra_cols=["product"]
    )
    assert src.name == f"parquet://{Path(tickets_parquet).resolve()}"
    assert src.estimated_rows == N
    table = read_all(src)
    assert max(b.num_rows for b in table.to_batches()) <= 250
    assert dict(zip(table["key"].to_pylist(), table["text"].to_pylist(), strict=True)) == expected(
        tickets_table
    )
    assert set(table["product"].to_pylist()) == set(
        tickets_table["product"].to_pylist()
    )  # hive partition column

    single = tmp_path / "one.parquet"
    pq.write_table(tickets_table, single, row_group_size=128)
    spellings: list[str | Path] = [str(single), single, f"parquet://{single}", f"file://{single}"]
    for spelling in spellings:
        src = open_source(spelling, key_col="ticket_id", text_col="body")
        assert src.name == f"parquet://{single.resolve()}"
        assert source_name(spelling) == src.name
    assert rows(open_source(single, key_col="ticket_id", text_col="body")) == expected(tickets_table)


def test_parquet_large_string_and_dictionary_columns_become_string(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array(["a", "b", "c"], pa.large_string()),
            "body": pa.array(["x", None, "z"]).dictionary_encode(),
            "note": pa.array(["n1", "n2", "n3"], pa.large_string()),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    got = read_all(open_source(path, key_col="id", text_col="body", extra_cols=["note"]))
    assert got.schema == pa.schema([("key", pa.string()), ("text", pa.string()), ("note", pa.string())])
    assert got.to_pydict() == {"key": ["a", "b", "c"], "text": ["x", None, "z"], "note": ["n1", "n2", "n3"]}


# -- in-memory frames ---------------------------------------------------------------------------------


def test_arrow_reader_pandas_and_arrow_stream_objects_read_alike(tickets_table: pa.Table) -> None:
    import arro3.core

    want = expected(tickets_table)
    frames: list[Any] = [
        tickets_table,
        tickets_table.to_reader(max_chunksize=77),
        tickets_table.to_pandas(),
        tickets_table.combine_chunks().to_batches()[0],
        arro3.core.Table.from_arrow(tickets_table),  # any __arrow_c_stream__ exporter (polars, arro3, ...)
    ]
    for frame in frames:
        src = open_source(frame, source="tickets", key_col="ticket_id", text_col="body", batch_size=512)
        assert src.name == "tickets"
        batches = list(src.batches())
        assert all(b.num_rows == 512 for b in batches[:-1]), type(frame)
        got = pa.Table.from_batches(batches)
        assert dict(zip(got["key"].to_pylist(), got["text"].to_pylist(), strict=True)) == want, type(frame)


def test_a_reader_streams_once(tickets_table: pa.Table) -> None:
    src = open_source(tickets_table.to_reader(), source="t", key_col="ticket_id", text_col="body")
    assert len(rows(src)) == N
    again = open_source(tickets_table, source="t", key_col="ticket_id", text_col="body")
    assert len(rows(again)) == N
    src2 = open_source(tickets_table.to_reader(), source="t", key_col="ticket_id", text_col="body")
    list(src2.batches())
    with pytest.raises(SourceError, match="already read"):
        list(src2.batches())


def test_pandas_keys_nulls_and_index() -> None:
    frame = pd.DataFrame({"id": [1.0, None, 3.0], "body": ["a", None, "c"]})  # NaN made the ints floats
    got = read_all(open_source(frame, source="f", key_col="id", text_col="body"))
    assert got.to_pydict() == {"key": ["1", None, "3"], "text": ["a", None, "c"]}

    indexed = pd.DataFrame({"body": ["x", "y"]}, index=pd.Index([10, 20], name="ticket_id"))
    assert rows(open_source(indexed, source="f", key_col="ticket_id", text_col="body")) == {
        "10": "x",
        "20": "y",
    }

    mixed = pd.DataFrame({"id": [1, 2], "body": ["ok", 5]})
    with pytest.raises(SourceError, match="cannot be converted to Arrow"):
        list(open_source(mixed, source="f", key_col="id", text_col="body").batches())
    with pytest.raises(SourceError, match="not a string"):
        open_source(pd.DataFrame({"id": [1], "n": [2.5]}), source="f", key_col="id", text_col="n")


def test_key_types_render_like_key_to_str() -> None:
    columns = {
        "int": pa.array([7, -3], pa.int32()),
        "uint": pa.array([2**63 + 5, 0], pa.uint64()),
        "float_int": pa.array([7.0, 1e20]),
        "float": pa.array([7.5, 0.1]),
        "str_view": pa.array(["7", "a"], pa.string_view()),
        "bool": pa.array([True, False]),
        "decimal": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2")], pa.decimal128(5, 2)),
        "date": pa.array([dt.date(2026, 1, 2), dt.date(2026, 3, 4)]),
        "binary": pa.array([b"\x01\xff", b""]),
        "dict": pa.array(["k1", "k2"]).dictionary_encode(),
    }
    for name, arr in columns.items():
        table = pa.table({"k": arr, "t": ["a", "b"]})
        got = read_all(open_source(table, source="s", key_col="k", text_col="t"))["key"].to_pylist()
        assert got == [key_to_str(v) for v in arr.to_pylist()], name
    assert (
        read_all(open_source(pa.table({"k": [7], "t": ["a"]}), source="s", key_col="k", text_col="t"))[
            "key"
        ].to_pylist()
        == read_all(open_source(pa.table({"k": ["7"], "t": ["a"]}), source="s", key_col="k", text_col="t"))[
            "key"
        ].to_pylist()
    )


# -- bad input -----------------------------------------------------------------------------------------


def test_missing_columns_list_what_is_there(
    tickets_delta: str, tickets_parquet: str, tickets_table: pa.Table
) -> None:
    for data, source in [
        (tickets_delta, None),
        (tickets_parquet, None),
        (tickets_table, "t"),
        (tickets_table.to_pandas(), "t"),
    ]:
        with pytest.raises(SourceError, match="key column 'id' not found") as err:
            open_source(data, source=source, key_col="id", text_col="body")
        assert "ticket_id, subject, body" in str(err.value)
        assert err.value.hint == "pass the right key_col="
        with pytest.raises(SourceError, match="text column 'text' not found"):
            open_source(data, source=source, key_col="ticket_id", text_col="text")
        with pytest.raises(SourceError, match="extra column 'nope' not found"):
            open_source(data, source=source, key_col="ticket_id", text_col="body", extra_cols=["nope"])
        not_text = r"text column 'updated_at' .* is (timestamp|datetime).*not a string"
        with pytest.raises(SourceError, match=not_text) as err:
            open_source(data, source=source, key_col="ticket_id", text_col="updated_at")
        assert "cast" in (err.value.hint or "").lower()


def test_configuration_errors(tmp_path: Path, tickets_table: pa.Table) -> None:
    with pytest.raises(ConfigError) as err:
        open_source(tickets_table, key_col="ticket_id", text_col="body")
    assert (
        err.value.message == "in-memory data needs source='name' because point ids derive from (source, key)"
    )
    with pytest.raises(ConfigError, match="nothing to read"):
        open_source(key_col="ticket_id", text_col="body")
    with pytest.raises(ConfigError, match="extra_cols may not include"):
        open_source(tickets_table, source="t", key_col="ticket_id", text_col="body", extra_cols=["key"])
    with pytest.raises(ConfigError, match="Delta tables only"):
        open_source(tickets_table, source="t", key_col="ticket_id", text_col="body", version=1)
    with pytest.raises(ConfigError, match=r"cannot read a builtins\.list"):
        open_source([1, 2], source="t", key_col="a", text_col="b")
    with pytest.raises(ConfigError, match="batch_size"):
        open_source(tickets_table, source="t", key_col="ticket_id", text_col="body", batch_size=0)

    with pytest.raises(SourceError, match="no table at") as missing:
        open_source(str(tmp_path / "missing"), key_col="a", text_col="b")
    assert "spark=" in (missing.value.hint or "")
    with pytest.raises(SourceError, match="no Delta table"):
        open_source(f"delta://{tmp_path / 'missing'}", key_col="a", text_col="b")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(SourceError, match="neither a Delta table"):
        open_source(tmp_path / "empty", key_col="a", text_col="b")


def test_closed_source_refuses_to_read(tickets_table: pa.Table) -> None:
    with open_source(tickets_table, source="t", key_col="ticket_id", text_col="body") as src:
        pass
    with pytest.raises(SourceError, match="closed"):
        list(src.batches())


def test_rebatch_cuts_exact_sizes() -> None:
    parts = [
        pa.record_batch({"a": list(range(i, i + n))}) for i, n in [(0, 7), (7, 0), (7, 30), (37, 3), (40, 1)]
    ]
    out = list(rebatch(parts, 10))
    assert [b.num_rows for b in out] == [10, 10, 10, 10, 1]
    assert pa.Table.from_batches(out)["a"].to_pylist() == list(range(41))


# -- sample tickets -----------------------------------------------------------------------------------


def test_sample_tickets_are_deterministic_realistic_and_have_cdf(tmp_path: Path) -> None:
    path = write_sample_tickets(tmp_path / "t", n=1_000, seed=3)
    dtable = DeltaTable(path)
    assert dtable.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    data = dtable.to_pyarrow_table().sort_by("ticket_id")
    assert data.schema.names == SAMPLE_SCHEMA.names
    assert data["ticket_id"].to_pylist() == list(range(1, 1_001))
    assert data.cast(SAMPLE_SCHEMA).equals(pa.Table.from_batches(list(sample_ticket_batches(1_000, seed=3))))
    bodies = data["body"].to_pylist()
    distinct = len(set(bodies))
    assert 0.9 * len(bodies) < distinct < len(bodies), "mostly unique texts, some shared by several tickets"
    assert min(len(b) for b in bodies) > 10
    assert len(set(data["product"].to_pylist())) > 4

    # A smaller table is a prefix of a larger one; another seed gives other texts.
    big = pa.Table.from_batches(list(sample_ticket_batches(60_000, seed=3)))
    tail = pa.Table.from_batches(list(sample_ticket_batches(15_000, seed=3, start_id=45_001)))
    assert big.slice(45_000).equals(tail)
    other = pa.Table.from_batches(list(sample_ticket_batches(1_000, seed=4)))
    assert other["body"].to_pylist() != bodies

    write_sample_tickets(path, n=5, seed=3, mode="append", start_id=5_000)
    assert DeltaTable(path).version() == 1
    assert rows(
        open_source(path, key_col="ticket_id", text_col="body", filter="ticket_id >= 5000")
    ).keys() == {str(i) for i in range(5_000, 5_005)}


# -- Spark -----------------------------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_dataframe_and_table_stream_in_batches(spark: Any) -> None:
    data = [
        (i, None if i % 7 == 0 else f"ticket {i}", "Acme API" if i % 2 else "Acme Mail")
        for i in range(1, 2_501)
    ]
    frame = spark.createDataFrame(data, "ticket_id long, body string, product string").repartition(3)

    with pytest.raises(ConfigError, match="in-memory data needs source="):
        open_source(frame, key_col="ticket_id", text_col="body")
    src = open_source(
        frame,
        source="spark-tickets",
        key_col="ticket_id",
        text_col="body",
        batch_size=400,
        filter="ticket_id > 500 AND product = 'Acme API'",
        extra_cols=["product"],
    )
    batches = list(src.batches())
    assert all(b.num_rows == 400 for b in batches[:-1])
    got = pa.Table.from_batches(batches)
    want = {str(i): t for i, t, p in data if i > 500 and p == "Acme API"}
    assert dict(zip(got["key"].to_pylist(), got["text"].to_pylist(), strict=True)) == want
    assert set(got["product"].to_pylist()) == {"Acme API"}

    with pytest.raises(SourceError, match="invalid filter 'nope > 1'"):
        open_source(frame, source="s", key_col="ticket_id", text_col="body", filter="nope > 1")
    with pytest.raises(SourceError, match="is bigint, not a string"):
        open_source(frame, source="s", key_col="ticket_id", text_col="ticket_id")
    with pytest.raises(SourceError, match="key column 'id' not found"):
        open_source(frame, source="s", key_col="id", text_col="body")

    frame.createOrReplaceTempView("spark_tickets")
    table_src = open_source(source="spark_tickets", spark=spark, key_col="ticket_id", text_col="body")
    assert table_src.name == "spark:spark_tickets"
    assert len(rows(table_src)) == 2_500
    with pytest.raises(SourceError, match="cannot read Spark table"):
        open_source(source="no_such_table", spark=spark, key_col="ticket_id", text_col="body")

"""embed() on the Spark executors gives what the local runner gives: same points, provenance, bill.

Real parts throughout: a local Spark session (``local[2,2]``: a failed task is
retried once), real Parquet, a real PostgreSQL with pgvector written by every
executor over its own connection. The provider is the shadow provider with a
log: executors are other processes, so every text sent is appended to a file
the test reads — the bill a real provider would send.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_drift.engine.embed import Runner, embed
from airflow_provider_drift.engine.errors import ConfigError, InvalidRowsError, TerminalError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.providers.base import Embeddings
from airflow_provider_drift.engine.providers.shadow import ShadowProvider
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.spark import SparkOptions
from tests.sinks.conftest import _pg_uri

pytestmark = pytest.mark.spark

MODEL = "openai/text-embedding-3-small"
SOURCE = "tickets"


class LoggedProvider(ShadowProvider):
    """Shadow vectors; every text sent is appended to ``log`` (one JSON line per call, any process).

    With ``fail_dir``, the first call that finds no ``failed`` file there creates it and fails
    after ``fail_after`` calls of its own process: a task dying mid-partition, once.
    """

    def __init__(self, log: Path, *, fail_dir: Path | None = None, fail_after: int = 1) -> None:
        super().__init__(MODEL, dim=16)
        self.log = str(log)
        self.fail_dir = None if fail_dir is None else str(fail_dir)
        self.fail_after = fail_after
        self._calls = 0

    def embed(self, texts: Sequence[str]) -> Embeddings:
        self._calls += 1
        if self.fail_dir is not None and self._calls > self.fail_after:
            try:
                os.close(os.open(os.path.join(self.fail_dir, "failed"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise RuntimeError("executor lost mid-partition")  # before paying for these texts
        with open(self.log, "a") as f:
            f.write(json.dumps(list(texts)) + "\n")
        return super().embed(texts)


def sent(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [t for line in log.read_text().splitlines() for t in json.loads(line)]


def tickets(n: int, *, changed: dict[int, str] | None = None) -> pa.Table:
    # every 10th text repeats another row's text: paid once per run, whoever holds it
    texts = [
        f"ticket {i % 50}: printer is jammed"
        if i % 10 == 0
        else f"ticket {i}: printer on floor {i % 7} is jammed"
        for i in range(n)
    ]
    for i, text in (changed or {}).items():
        texts[i] = text
    return pa.table({"id": list(range(n)), "body": texts})


def frame(spark: Any, tmp_path: Path, table: pa.Table, name: str = "t.parquet") -> Any:
    path = tmp_path / name
    pq.write_table(table, path)
    return spark.read.parquet(str(path)).repartition(3)


def sink_points(uri: str) -> dict[str, tuple[str, str, list[float]]]:
    with open_sink(uri) as sink:
        got: dict[str, tuple[str, str, list[float]]] = {}
        for page in sink.scroll(with_vectors=True):
            for p in page:
                assert p.vector is not None
                got[p.id] = (
                    p.payload["key"],
                    p.payload["content_hash"],
                    [round(float(x), 5) for x in p.vector],
                )
        return got


def ledger_name(uri: str) -> str:
    """The name the ledger knows a sink by (its URI without secrets)."""
    with open_sink(uri) as sink:
        return sink.uri


def provenance(ledger: Ledger, sink: str) -> dict[str, tuple[str, str, str]]:
    rows = [r for chunk in ledger.live_points(ledger_name(sink)) for r in chunk]
    assert all(r["pending_run"] is None for r in rows)
    return {r["point_id"]: (r["source_key"], r["content_hash"], r["model"]) for r in rows}


def comparable(run: Any) -> dict[str, Any]:
    """The record minus what differs by design: ids, timing, the runner, and n_reused (batching)."""
    d = run.to_dict()
    for k in ("run_id", "duration_s", "sink", "runner", "spark", "n_reused"):
        d.pop(k)
    return d


@pytest.fixture
def pg_sinks(pg_dsn: str, pg_table_name: str) -> tuple[str, str]:
    return _pg_uri(pg_dsn, pg_table_name + "_local"), _pg_uri(pg_dsn, pg_table_name + "_spark")


def test_executors_write_what_the_local_runner_writes_and_a_rerun_pays_only_for_changes(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str]
) -> None:
    local_uri, spark_uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    df = frame(spark, tmp_path, tickets(300))
    logs = {"local": tmp_path / "local.log", "spark": tmp_path / "spark.log"}

    def run(runner: Runner, data: Any, **kw: Any) -> Any:
        return embed(
            data, text_col="body", key_col="id", model=MODEL, source=SOURCE, ledger=ledger, batch_size=64,
            sink=local_uri if runner == "local" else spark_uri, provider=LoggedProvider(logs[runner]),
            runner=runner, **kw,
        )  # fmt: skip

    local, distributed = run("local", df), run("spark", df)
    distinct = set(tickets(300).column("body").to_pylist())
    assert comparable(distributed) == comparable(local)
    assert (distributed.n_rows_processed, distributed.n_written, distributed.n_embedded) == (300, 300, 275)
    assert local.runner == "local" and local.spark is None
    assert distributed.runner == "spark"
    assert distributed.spark is not None
    assert distributed.spark["executor_tasks"] == distributed.spark["partitions"] >= 1
    assert distributed.spark["retried_tasks"] == 0
    assert sorted(sent(logs["spark"])) == sorted(distinct)  # every distinct text paid exactly once
    assert sink_points(spark_uri) == sink_points(local_uri)
    assert provenance(ledger, spark_uri) == provenance(ledger, local_uri)
    stored = ledger.get_run(distributed.run_id)
    assert stored is not None and stored["details"]["record"]["runner"] == "spark"

    again = run("spark", df)
    assert (again.n_rows_deduped, again.n_embedded, again.n_written) == (300, 0, 0)
    assert len(sent(logs["spark"])) == len(distinct)

    # 5% churn: exactly the changed texts are embedded, the points overwritten, the ledger follows
    changed = {i: f"ticket {i} reopened: toner low" for i in range(3, 300, 20)}
    churned = frame(spark, tmp_path, tickets(300, changed=changed), "churn.parquet")
    before = len(sent(logs["spark"]))
    third = run("spark", churned)
    assert sorted(sent(logs["spark"])[before:]) == sorted(changed.values())
    assert (third.n_embedded, third.n_written, third.n_rows_deduped) == (15, 15, 285)
    run("local", churned)
    assert sink_points(spark_uri) == sink_points(local_uri)
    assert provenance(ledger, spark_uri) == provenance(ledger, local_uri)


@pytest.mark.parametrize("known_via", ["broadcast", "join"])
def test_both_ways_of_shipping_the_ledger_plan_the_same(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str], known_via: str
) -> None:
    _, uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    log = tmp_path / "sent.log"

    def run(table: pa.Table, name: str) -> Any:
        return embed(
            frame(spark, tmp_path, table, name), text_col="body", key_col="id", model=MODEL, source=SOURCE,
            sink=uri, ledger=ledger, provider=LoggedProvider(log), runner="spark",
            spark_options=SparkOptions(known_via=known_via),  # type: ignore[arg-type]
        )  # fmt: skip

    run(tickets(120), "a.parquet")
    second = run(tickets(120, changed={5: "new text 5", 6: "new text 6"}), "b.parquet")
    assert second.spark is not None and second.spark["known_via"] == known_via
    assert (second.n_rows_deduped, second.n_embedded, second.n_written) == (118, 2, 2)
    assert len(sent(log)) == 113 + 2 and sorted(sent(log)[-2:]) == ["new text 5", "new text 6"]


def test_a_task_that_fails_once_is_retried_without_paying_or_recording_twice(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str]
) -> None:
    _, uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    log = tmp_path / "sent.log"
    provider = LoggedProvider(log, fail_dir=tmp_path, fail_after=1)
    table = tickets(300)
    run = embed(
        frame(spark, tmp_path, table), text_col="body", key_col="id", model=MODEL, source=SOURCE, sink=uri,
        ledger=ledger, provider=provider, runner="spark", batch_size=16,
        spark_options=SparkOptions(partitions=2),
    )  # fmt: skip
    assert (tmp_path / "failed").exists()
    assert run.spark is not None and run.spark["retried_tasks"] == 1
    distinct = set(table.column("body").to_pylist())
    assert sorted(sent(log)) == sorted(distinct)  # the retry paid only for what was not yet written
    assert (run.n_written, run.n_embedded) == (300, len(distinct))
    assert run.tokens == ShadowProvider(MODEL, dim=16).estimate_tokens(sorted(distinct))
    points = sink_points(uri)
    assert len(points) == 300
    assert provenance(ledger, uri) == {pid: (key, h, MODEL) for pid, (key, h, _) in points.items()}


def test_bad_rows_fail_before_anything_is_written_and_options_count_like_the_local_runner(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str]
) -> None:
    local_uri, uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    bad = pa.table({"id": [1, 2, 2, 3, 4], "body": ["a", "b", "b again", "  ", "d"]})
    df = frame(spark, tmp_path, bad)
    common: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": MODEL, "source": SOURCE,
                              "ledger": ledger}  # fmt: skip
    with pytest.raises(InvalidRowsError, match=r"null or blank 'body'.*nothing was written"):
        embed(df, sink=uri, provider=LoggedProvider(tmp_path / "x.log"), runner="spark", **common)
    with pytest.raises(InvalidRowsError, match=r"not unique: 1 key.*nothing was written"):
        embed(df, sink=uri, provider=LoggedProvider(tmp_path / "x.log"), runner="spark", on_invalid="skip",
              **common)  # fmt: skip
    assert not sent(tmp_path / "x.log")
    assert ledger.live_count(ledger_name(uri)) == 0
    lenient = {"on_invalid": "skip", "on_duplicate": "keep_last", **common}
    distributed = embed(df, sink=uri, provider=LoggedProvider(tmp_path / "s.log"), runner="spark", **lenient)
    local = embed(df, sink=local_uri, provider=LoggedProvider(tmp_path / "l.log"), runner="local", **lenient)
    assert comparable(distributed) == comparable(local)
    assert (distributed.n_rows_processed, distributed.n_skipped, distributed.n_written) == (5, 2, 3)
    assert sorted(k for k, _, _ in sink_points(uri).values()) == ["1", "2", "4"]
    assert {h for _, h, _ in sink_points(uri).values()} == {h for _, h, _ in sink_points(local_uri).values()}


def test_delete_missing_removes_rows_gone_from_the_source(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str]
) -> None:
    _, uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    provider = LoggedProvider(tmp_path / "sent.log")
    kw: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": MODEL, "source": SOURCE, "sink": uri,
                          "ledger": ledger, "provider": provider, "runner": "spark"}  # fmt: skip
    embed(frame(spark, tmp_path, tickets(40)), **kw)
    fewer = frame(spark, tmp_path, tickets(40).slice(0, 30), "fewer.parquet")
    run = embed(fewer, delete_missing=True, **kw)
    assert (run.n_deleted, run.n_written, run.n_rows_deduped) == (10, 0, 30)
    assert sorted(int(k) for k, _, _ in sink_points(uri).values()) == list(range(30))
    assert ledger.live_count(ledger_name(uri)) == 30


def test_a_provider_key_missing_on_the_executors_is_a_terminal_error_naming_them(
    spark: Any, tmp_path: Path, pg_sinks: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if "OPENAI_API_KEY" in os.environ:
        pytest.skip("the executors inherited an OPENAI_API_KEY from this environment")
    _, uri = pg_sinks
    ledger = Ledger(tmp_path / "ledger.db")
    # The driver has a key (so the driver's own provider builds); the executors do not.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-driver-only")
    with pytest.raises(ConfigError) as err:
        embed(frame(spark, tmp_path, tickets(10)), text_col="body", key_col="id", model=MODEL, source=SOURCE,
              sink=uri, ledger=ledger, runner="spark")  # fmt: skip
    assert isinstance(err.value, TerminalError)
    assert "no OpenAI API key given (on a Spark executor)" in err.value.message
    assert "executors" in (err.value.hint or "")
    assert ledger.live_count(ledger_name(uri)) == 0
    assert ledger.recent_runs(limit=1)[0]["status"] == "failed"


def test_runner_spark_refuses_what_executors_cannot_write_and_auto_stays_local(
    spark: Any, tmp_path: Path
) -> None:
    df = frame(spark, tmp_path, tickets(5))
    kw: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": MODEL, "source": SOURCE,
                          "ledger": tmp_path / "l.db", "provider": ShadowProvider(MODEL, dim=16)}  # fmt: skip
    local_sink = f"qdrant+local://{tmp_path}/q/t"
    with pytest.raises(ConfigError, match="in-process store that only one process can write"):
        embed(df, sink=local_sink, runner="spark", **kw)
    auto = embed(df, sink=local_sink, **kw)
    assert auto.runner == "local" and auto.n_written == 5
    with pytest.raises(ConfigError, match="needs a Spark DataFrame"):
        embed(tickets(5), sink=local_sink, runner="spark", **kw)

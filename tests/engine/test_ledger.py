"""The ledger: schema, provenance, reports, and many writers at once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_drift.engine.errors import LedgerError
from airflow_provider_drift.engine.ledger import SCHEMA_VERSION, Ledger, Upsert


def test_new_ledger_has_current_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ledger_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_a_ledger_of_an_older_schema_is_migrated_and_keeps_its_vectors(tmp_path: Path) -> None:
    from airflow_provider_drift.engine.ledger.schema import MIGRATIONS

    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0][1].split(";"):  # a ledger written by the first release
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model, run_id,"
        " created_at, updated_at) VALUES ('s', 'p1', 'src', 'k1', ?, 'sha256-v1', 'm', 'r', 'now', 'now')",
        ("ab" * 32,),
    )
    conn.commit()
    conn.close()
    with Ledger(path) as led:
        assert led.find_embedded("m", ["ab" * 32, "cd" * 32], sink="s") == {"ab" * 32: "p1"}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION > 1
    conn.close()


def test_default_path_follows_environment(ledger_path: Path) -> None:
    with Ledger() as led:
        assert led.path == ledger_path


def test_provenance_cost_and_deletion_round_trip(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    run = led.start_run(
        kind="embed",
        model="m/a",
        sink="s",
        source="src",
        run_context={"dag_id": "d", "task_id": "t", "run_id": "r1"},
    )
    led.record_upserts(
        "s", [Upsert("p1", "src", "k1", "h1", 3), Upsert("p2", "src", "k2", "h2", 3)], model="m/a", run_id=run
    )
    led.finish_run(run, {"n_rows_processed": 2, "n_embedded": 2, "tokens": 10, "cost_usd": 0.5})

    prov = led.provenance("p1")
    assert prov is not None
    assert (prov["source"], prov["source_key"], prov["content_hash"], prov["model"]) == (
        "src",
        "k1",
        "h1",
        "m/a",
    )
    assert prov["cost_usd"] == pytest.approx(0.25)
    assert (prov["dag_id"], prov["task_id"], prov["airflow_run_id"]) == ("d", "t", "r1")
    assert prov["deleted"] is False

    run2 = led.start_run(kind="watch", model="m/a", sink="s", source="src")
    led.record_deletes("s", ["p1"], run_id=run2, source_version=4)
    led.finish_run(run2, {"n_deleted": 1})
    prov = led.provenance("p1")
    assert prov["deleted"] is True and prov["deleted_run_id"] == run2 and prov["deleted_version"] == 4
    # A deleted point no longer counts as holding its text: a re-insert must pay again.
    assert led.find_embedded("m/a", ["h1", "h2"], sink="s") == {"h2": "p2"}
    assert led.lookup("s", ["p1"])["p1"].deleted
    assert led.live_count("s") == 1

    # Re-inserting brings it back to life.
    led.record_upserts("s", [Upsert("p1", "src", "k1", "h1", 5)], model="m/a", run_id=run2)
    assert not led.lookup("s", ["p1"])["p1"].deleted and led.live_count("s") == 2


def test_cost_reports_keep_unknown_prices_visible(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    for model, cost in [("openai/a", 1.25), ("openai/a", 0.75), ("x/unknown", None)]:
        run = led.start_run(kind="embed", model=model, sink="s1", source="src")
        led.finish_run(run, {"n_embedded": 1, "tokens": 5, "cost_usd": cost})
    by_model = {r["model"]: r for r in led.cost_by_model()}
    assert by_model["openai/a"]["cost_usd"] == pytest.approx(2.0)
    assert by_model["openai/a"]["unpriced_runs"] == 0
    assert by_model["x/unknown"]["cost_usd"] == 0 and by_model["x/unknown"]["unpriced_runs"] == 1
    assert [r["sink"] for r in led.cost_by("sink")] == ["s1"]
    assert len(led.cost_by("day")) == 1
    assert [r["status"] for r in led.recent_runs("s1", 2)] == ["success", "success"]


def test_watermark_never_moves_backwards(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    assert led.get_watermark("src", "s") is None
    led.set_watermark("src", "s", 7)
    led.set_watermark("src", "s", 3)
    assert led.get_watermark("src", "s") == 7


def _writer(path: str, worker: int, n_runs: int, rows_per_run: int) -> None:
    led = Ledger(path)
    for r in range(n_runs):
        run = led.start_run(kind="embed", model="m/a", sink="s", source=f"w{worker}")
        led.record_upserts(
            "s",
            [
                Upsert(f"{worker}-{r}-{i}", f"w{worker}", f"{r}-{i}", f"h{worker}-{r}-{i}")
                for i in range(rows_per_run)
            ],
            model="m/a",
            run_id=run,
        )
        led.finish_run(run, {"n_embedded": rows_per_run, "cost_usd": 0.001})
    led.close()


def test_parallel_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Ledger(path).close()
    workers, runs, rows = 6, 15, 200
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, runs, rows)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    led = Ledger(path)
    assert led.live_count("s") == workers * runs * rows
    assert led.sink_totals("s")["runs"] == workers * runs
    assert led.sink_totals("s")["cost_usd"] == pytest.approx(workers * runs * 0.001)


def _ledger_at(path: Path, version: int) -> sqlite3.Connection:
    """A ledger file as the release with schema ``version`` wrote it."""
    from airflow_provider_drift.engine.ledger.schema import MIGRATIONS

    conn = sqlite3.connect(path)
    for v, script in MIGRATIONS:
        if v <= version:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_v2_ledger_is_migrated_to_v3_and_keeps_runs_vectors_and_sinks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = _ledger_at(path, 2)
    conn.execute(
        "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model, run_id,"
        " created_at, updated_at) VALUES ('s', 'p1', 'src', 'k1', ?, 'sha256-v1', 'm', 'r', 'now', 'now')",
        ("ab" * 32,),
    )
    conn.execute(
        "INSERT INTO runs (run_id, kind, status, started_at) VALUES ('old', 'embed', 'running',"
        " '2020-01-01T00:00:00.000000+00:00')"
    )
    conn.execute(
        "INSERT INTO sinks (sink, model, dim, distance, created_at, updated_at)"
        " VALUES ('s', 'm', 8, 'cosine', 'now', 'now')"
    )
    conn.commit()
    conn.close()
    with Ledger(path) as led:
        assert SCHEMA_VERSION == 3
        assert led.stale_positions("s", "m", ["p1"], ["ab" * 32]) == []  # still trusted: no mark
        assert led.lookup("s", ["p1"])["p1"].pending is False
        info = led.sink_info("s")
        assert info is not None and (info["point_id_scheme"], info["vector_scheme"]) == ("uuid5-v1", None)
        # a run from before v3 has no host, pid or heartbeat: its start time is its last sign of life
        assert led.mark_abandoned() == ["old"]
        assert led.get_run("old")["status"] == "abandoned"  # type: ignore[index]
        led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="provider")
        assert led.sink_info("s")["vector_scheme"] == "provider"  # type: ignore[index]


def test_a_marked_point_is_stale_never_reused_and_settled_against_the_sink(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as led:
        run = led.start_run(kind="embed", sink="s")
        led.record_upserts(
            "s",
            [Upsert("p1", "src", "k1", "a" * 64), Upsert("p2", "src", "k2", "b" * 64)],
            model="m",
            run_id=run,
        )
        # a batch about to overwrite p1 with another text, and p2 with the same: only p1 is marked
        assert (
            led.mark_pending(
                "s", ["p1", "p2", "p3"], run_id=run, hashes=["c" * 64, "b" * 64, "d" * 64], model="m"
            )
            == 1
        )
        assert led.stale_positions("s", "m", ["p1", "p2"], ["a" * 64, "b" * 64]) == [0]
        assert led.find_embedded("m", ["a" * 64, "b" * 64], sink="s") == {"b" * 64: "p2"}
        assert list(led.unsettled("s")) == []  # its run is still running: nobody may settle it
        led.finish_run(run, {}, status="failed")
        (rows,) = list(led.unsettled("s"))
        assert [r["point_id"] for r in rows] == ["p1"]
        assert led.settle("s", {"p1": ("c" * 64, "m")}) == 1  # the sink holds the new text
        assert led.lookup("s", ["p1"])["p1"] == led.lookup("s", ["p1"])["p1"].__class__(
            "c" * 64, "m", None, False, False
        )
        led.mark_pending("s", ["p2"], run_id="another", hashes=None)  # a delete about to happen
        assert led.settle("s", {"p2": None}) == 1  # ...which happened: the sink lacks the point
        assert led.lookup("s", ["p2"])["p2"].deleted


def test_a_run_on_another_host_is_abandoned_only_after_its_heartbeat_goes_stale(tmp_path: Path) -> None:
    from airflow_provider_drift.engine.ledger.liveness import HOST, STALE_AFTER_S

    with Ledger(tmp_path / "l.db") as led:
        mine = led.start_run(kind="embed")
        fresh = led.start_run(kind="watch")
        stale = led.start_run(kind="watch")
        with led._db.write() as conn:
            conn.execute("UPDATE runs SET host='elsewhere', pid=1 WHERE run_id IN (?, ?)", (fresh, stale))
            conn.execute(
                "UPDATE runs SET heartbeat_at=strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', ?) WHERE run_id=?",
                (f"-{int(STALE_AFTER_S) + 60} seconds", stale),
            )
        assert led.mark_abandoned() == [stale]
        statuses = {r["run_id"]: r["status"] for r in led.recent_runs(limit=5)}
        assert statuses == {mine: "running", fresh: "running", stale: "abandoned"}
        assert "elsewhere" in (led.get_run(stale) or {})["error"]
        assert led.get_run(mine)["host"] == HOST  # type: ignore[index]


def test_a_sink_refuses_a_run_of_another_vector_or_point_id_scheme(tmp_path: Path) -> None:
    from airflow_provider_drift.engine.ledger import SchemeMismatchError

    with Ledger(tmp_path / "l.db") as led:
        led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="shadow-v2")
        led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="shadow-v2")
        with pytest.raises(
            SchemeMismatchError, match="vector scheme 'shadow-v2'; this run makes 'provider'"
        ) as info:
            led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="provider")
        assert "shadow_mode" in (info.value.hint or "")
        with led._db.write() as conn:
            conn.execute("UPDATE sinks SET point_id_scheme='uuid5-v0' WHERE sink='s'")
        with pytest.raises(SchemeMismatchError, match="point-id scheme 'uuid5-v0'"):
            led.register_sink("s", model="m", dim=8, distance="cosine", vector_scheme="shadow-v2")


def test_embed_refuses_shadow_vectors_into_a_collection_of_real_ones(tmp_path: Path) -> None:
    import pyarrow as pa

    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.ledger import SchemeMismatchError
    from airflow_provider_drift.engine.providers.shadow import ShadowProvider

    class RealModel(ShadowProvider):  # stands for a provider that calls the model: not shadow vectors
        is_shadow = False

    sink = f"qdrant+local://{tmp_path}/q/c"
    data = pa.table({"id": [1, 2], "body": ["a", "b"]})
    common = {"text_col": "body", "key_col": "id", "model": "openai/text-embedding-3-small", "sink": sink}
    embed(data, source="s", provider=RealModel("openai/text-embedding-3-small", dim=8), **common)  # type: ignore[arg-type]
    with pytest.raises(SchemeMismatchError, match="'provider'; this run makes 'shadow-v"):
        embed(data, source="s", shadow_mode=True, dim=8, **common)  # type: ignore[arg-type]


def test_the_heartbeat_thread_keeps_a_running_run_and_a_lease_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from airflow_provider_drift.engine.ledger import liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_S", 0.05)
    beat = liveness._Heartbeat()
    with Ledger(tmp_path / "l.db") as led:
        run = led.start_run(kind="watch")
        with led.lease("src", "s") as holder:
            first = (led.get_run(run) or {})["heartbeat_at"]
            lease_first = led._db.query("SELECT heartbeat_at FROM leases")[0][0]
            beat.add_run(led.path, run)
            beat.add_lease(led.path, ("src", "s", holder))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = (led.get_run(run) or {})["heartbeat_at"]
                lease_now = led._db.query("SELECT heartbeat_at FROM leases")[0][0]
                if now > first and lease_now > lease_first:
                    break
                time.sleep(0.05)
            assert now > first and lease_now > lease_first
            beat.drop_lease(led.path, ("src", "s", holder))
        beat.drop_run(led.path, run)
        beat._wake.set()  # stop this instance's thread

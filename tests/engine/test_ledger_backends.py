"""The ledger's behaviour, once per backend (SQLite file, PostgreSQL schema): every test runs on both.

Like the sink contract suite: the same calls, the same whole results, so
the PostgreSQL ledger cannot drift from the embedded default.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_drift.engine.errors import MigrationError
from airflow_provider_drift.engine.ledger import Ledger, SchemeMismatchError, Upsert, VectorState
from airflow_provider_drift.engine.ledger.port import LedgerPort


def test_both_backends_implement_the_port(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        assert isinstance(led, LedgerPort) and isinstance(led, Ledger)
        assert str(led.location) in repr(led)
        assert type(led).__name__ == ("PostgresLedger" if "://" in ledger_location else "Ledger")


def test_provenance_cost_and_deletion_round_trip(ledger_location: str) -> None:
    led = Ledger(ledger_location)
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
    assert prov["deleted"] is False and prov["source_version"] == 3 and len(prov["copies"]) == 1
    got = led.get_run(run)
    assert got is not None
    assert {k: got[k] for k in ("status", "n_rows", "n_embedded", "tokens", "cost_usd", "cost_known")} == {
        "status": "success",
        "n_rows": 2,
        "n_embedded": 2,
        "tokens": 10,
        "cost_usd": 0.5,
        "cost_known": True,
    }
    assert got["details"]["record"]["n_embedded"] == 2 and got["details"]["context"]["dag_id"] == "d"

    run2 = led.start_run(kind="watch", model="m/a", sink="s", source="src")
    led.record_deletes("s", ["p1"], run_id=run2, source_version=4)
    led.finish_run(run2, {"n_deleted": 1})
    prov = led.provenance("p1")
    assert prov is not None
    assert prov["deleted"] is True and prov["deleted_run_id"] == run2 and prov["deleted_version"] == 4
    # A deleted point no longer counts as holding its text: a re-insert must pay again.
    assert led.find_embedded("m/a", ["h1", "h2"], sink="s") == {"h2": "p2"}
    assert led.lookup("s", ["p1", "p2", "nope"]) == {
        "p1": VectorState("h1", "m/a", 4, True, False),
        "p2": VectorState("h2", "m/a", 3, False, False),
    }
    assert led.live_count("s") == 1 and led.models_in_sink("s") == {"m/a": 1}

    # Re-inserting brings it back to life.
    led.record_upserts("s", [Upsert("p1", "src", "k1", "h1", 5)], model="m/a", run_id=run2)
    assert not led.lookup("s", ["p1"])["p1"].deleted and led.live_count("s") == 2
    assert led.live_sources("s") == {"src": 2}
    assert [[r["point_id"] for r in chunk] for chunk in led.live_points("s", chunk=1)] == [["p1"], ["p2"]]
    led.close()


def test_cost_reports_keep_unknown_prices_visible(ledger_location: str) -> None:
    led = Ledger(ledger_location)
    for model, cost in [("openai/a", 1.25), ("openai/a", 0.75), ("x/unknown", None)]:
        run = led.start_run(kind="embed", model=model, sink="s1", source="src")
        led.finish_run(run, {"n_embedded": 1, "tokens": 5, "cost_usd": cost})
    assert led.cost_by_model() == [
        {"model": "openai/a", "cost_usd": 2.0, "tokens": 10, "n_embedded": 2, "runs": 2, "unpriced_runs": 0},
        {"model": "x/unknown", "cost_usd": 0.0, "tokens": 5, "n_embedded": 1, "runs": 1, "unpriced_runs": 1},
    ]
    assert [r["sink"] for r in led.cost_by("sink")] == ["s1"]
    assert len(led.cost_by("day")) == 1
    assert led.sink_totals("s1") == {"runs": 3, "cost_usd": 2.0, "unpriced_runs": 1}
    assert [r["status"] for r in led.recent_runs("s1", 2)] == ["success", "success"]
    led.close()


def test_watermark_never_moves_backwards(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        assert led.get_watermark("src", "s") is None
        led.set_watermark("src", "s", 7)
        led.set_watermark("src", "s", 3)
        led.set_watermark("other", "s", 1)
        assert led.get_watermark("src", "s") == 7
        assert led.watermarks("s") == {"src": 7, "other": 1}


def test_a_marked_point_is_stale_never_reused_and_settled_against_the_sink(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
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
        assert led.pending_count("s") == 1
        assert led.stale_positions("s", "m", ["p1", "p2", "p9"], ["a" * 64, "b" * 64, "e" * 64]) == [0, 2]
        assert led.find_embedded("m", ["a" * 64, "b" * 64], sink="s") == {"b" * 64: "p2"}
        assert list(led.unsettled("s")) == []  # its run is still running: nobody may settle it
        led.finish_run(run, {}, status="failed")
        (rows,) = list(led.unsettled("s"))
        assert [r["point_id"] for r in rows] == ["p1"]
        assert led.settle("s", {"p1": ("c" * 64, "m")}) == 1  # the sink holds the new text
        assert led.lookup("s", ["p1"])["p1"] == VectorState("c" * 64, "m", None, False, False)
        assert led.mark_pending("s", ["p2"], run_id="another", hashes=None) == 1  # a delete about to happen
        assert led.settle("s", {"p2": None}) == 1  # ...which happened: the sink lacks the point
        assert led.lookup("s", ["p2"])["p2"].deleted


def test_tombstones_versions_and_erasures(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        run = led.start_run(kind="watch", sink="s", source="src")
        led.record_upserts("s", [Upsert("p1", "src", "k1", "h1", 2)], model="m", run_id=run)
        # a delete of a key the ledger never held leaves a tombstone; an older one changes nothing
        led.record_tombstones("s", [Upsert("p9", "src", "k9", "h9", 5)], model="m", run_id=run)
        led.record_tombstones("s", [Upsert("p9", "src", "k9", "h9", 4)], model="m", run_id=run)
        (row,) = led.points_for_key("src", "k9")
        assert (row["deleted_version"], row["source_version"], row["deleted_at"] is not None) == (5, 5, True)
        # one point twice in a batch: the newer version wins, whatever the order
        twice = [Upsert("p8", "src", "k8", "h8", 7), Upsert("p8", "src", "k8", "h8", 6)]
        led.record_tombstones("s", twice, model="m", run_id=run)
        (row,) = led.points_for_key("src", "k8")
        assert (row["deleted_version"], row["source_version"]) == (7, 7)
        led.advance_versions("s", [("p1", 3), ("p1", 1)])
        assert led.lookup("s", ["p1"])["p1"].source_version == 3
        assert led.advance_source_versions("s", "src", 6) == 2
        assert led.advance_source_versions("s", "src", 6) == 0
        erasure = led.record_erasure(
            source="src", key="k1", sink="s", point_id="p1", requested_at="2026-01-01", verified=True,
            proof={"absent": True},
        )  # fmt: skip
        (found,) = led.erasures_for_key("src", "k1")
        assert (found["erasure_id"], found["verified"], found["proof"]) == (erasure, True, {"absent": True})
        assert [e["erasure_id"] for e in (led.provenance("p1") or {})["erasures"]] == [erasure]


def test_a_full_pass_finds_the_points_it_did_not_see(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        ups = [Upsert(f"p{i}", "src", f"k{i}", f"h{i}") for i in range(10)]
        led.record_upserts("s", ups, model="m", run_id="r")
        led.mark_seen([f"p{i}" for i in range(0, 10, 2)])
        led.mark_seen(["p0", "p2"])  # seen twice is seen once
        assert sorted(p for chunk in led.unseen_points("s", "src", chunk=2) for p in chunk) == [
            "p1",
            "p3",
            "p5",
            "p7",
            "p9",
        ]
        led.clear_seen()
        assert sum(len(c) for c in led.unseen_points("s", "src")) == 10


def test_migrations_are_compare_and_set_and_one_is_open_per_sink(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        common = {"strategy": "dual_write", "from_model": "a", "to_model": "b", "sink": "s"}
        mid = led.create_migration(**common, target_sink="t", state="building", exclusive=True)
        with pytest.raises(MigrationError, match="already has an open migration"):
            led.create_migration(**common, target_sink="t2", state="building", exclusive=True)
        moved = led.set_migration_state(mid, "ready", expect=["building"], details={"n": 3})
        assert (moved["state"], moved["details"]["n"]) == ("ready", 3)
        assert [h["state"] for h in moved["details"]["history"]] == ["building", "ready"]
        with pytest.raises(MigrationError, match="is ready, not building"):
            led.set_migration_state(mid, "cut_over", expect=["building"])
        assert [m["migration_id"] for m in led.open_migrations("s")] == [mid]
        assert [m["migration_id"] for m in led.open_migrations_into("t")] == [mid]
        assert [m["migration_id"] for m in led.migrations("t", states=["ready"])] == [mid]
        aid = led.record_adapter(
            path="/a.npz", sha256="x", kind="linear", from_model="a", to_model="b", sink="s", d_new=8,
            d_old=4, arr=0.9, overlap=0.8, threshold=0.7, passed=True, run_id=None, details={"k": 1},
        )  # fmt: skip
        (adapter,) = led.adapters("s", passed=True)
        assert (adapter["adapter_id"], adapter["passed"], adapter["details"], adapter["arr"]) == (
            aid,
            True,
            {"k": 1},
            0.9,
        )
        assert led.adapters(passed=False) == []


def test_a_run_on_another_host_is_abandoned_only_after_its_heartbeat_goes_stale(ledger_location: str) -> None:
    from airflow_provider_drift.engine.ledger.liveness import HOST, STALE_AFTER_S

    with Ledger(ledger_location) as led:
        mine = led.start_run(kind="embed")
        fresh = led.start_run(kind="watch")
        stale = led.start_run(kind="watch")
        old = (datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)).isoformat(timespec="microseconds")
        with led._db.write() as conn:
            conn.execute("UPDATE runs SET host='elsewhere', pid=1 WHERE run_id IN (?, ?)", (fresh, stale))
            conn.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=?", (old, stale))
        assert led.mark_abandoned() == [stale]
        statuses = {r["run_id"]: r["status"] for r in led.recent_runs(limit=5)}
        assert statuses == {mine: "running", fresh: "running", stale: "abandoned"}
        assert "elsewhere" in (led.get_run(stale) or {})["error"]
        assert led.get_run(mine)["host"] == HOST  # type: ignore[index]


def test_a_sink_refuses_a_run_of_another_vector_or_point_id_scheme(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
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
        (sink,) = led.known_sinks()
        assert (sink["sink"], sink["dim"], sink["vector_scheme"]) == ("s", 8, "shadow-v2")


def test_the_heartbeat_thread_keeps_a_running_run_and_a_lease_alive(
    ledger_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_drift.engine.ledger import liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_S", 0.05)
    beat = liveness._Heartbeat()
    with Ledger(ledger_location) as led:
        run = led.start_run(kind="watch")
        with led.lease("src", "s") as holder:
            first = (led.get_run(run) or {})["heartbeat_at"]
            lease_first = led._db.query("SELECT heartbeat_at FROM leases")[0][0]
            beat.add_run(led.location, run)
            beat.add_lease(led.location, ("src", "s", holder))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = (led.get_run(run) or {})["heartbeat_at"]
                lease_now = led._db.query("SELECT heartbeat_at FROM leases")[0][0]
                if now > first and lease_now > lease_first:
                    break
                time.sleep(0.05)
            assert now > first and lease_now > lease_first
            beat.drop_lease(led.location, ("src", "s", holder))
        beat.drop_run(led.location, run)
        beat._wake.set()  # stop this instance's thread
        assert led._db.query("SELECT COUNT(*) FROM leases")[0][0] == 0


# --- many processes at once ------------------------------------------------------------------------


def _writer(location: str, worker: int, n_runs: int, rows_per_run: int) -> None:
    led = Ledger(location)
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
        led.set_watermark("shared", "s", worker * 1000 + r)
        led.finish_run(run, {"n_embedded": rows_per_run, "cost_usd": 0.001})
    led.close()


def test_parallel_writer_processes_lose_nothing(ledger_location: str) -> None:
    Ledger(ledger_location).close()
    workers, runs, rows = 6, 15, 200
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(ledger_location, w, runs, rows)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    with Ledger(ledger_location) as led:
        assert led.live_count("s") == workers * runs * rows
        assert led.live_sources("s") == {f"w{w}": runs * rows for w in range(workers)}
        assert led.sink_totals("s")["runs"] == workers * runs
        assert led.sink_totals("s")["cost_usd"] == pytest.approx(workers * runs * 0.001)
        # every process moved one watermark forward; the highest value any of them set won
        assert led.get_watermark("shared", "s") == (workers - 1) * 1000 + runs - 1


def _lease_taker(location: str, worker: int, rounds: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    led = Ledger(location)
    for _ in range(rounds):
        with led.lease("src", "s", poll_s=0.01) as holder:
            # inside the lease: read, then write, the watermark — a lost update would show as a gap
            now = led.get_watermark("src", "s") or 0
            led.set_watermark("src", "s", now + 1)
            out.put((worker, holder, now + 1))
    led.close()


def test_a_lease_admits_one_process_at_a_time(ledger_location: str) -> None:
    Ledger(ledger_location).close()
    workers, rounds = 4, 15
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_lease_taker, args=(ledger_location, w, rounds, out)) for w in range(workers)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in range(workers * rounds)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    # each read-then-write under the lease saw the previous one: no value taken twice, none skipped
    assert sorted(v for _, _, v in got) == list(range(1, workers * rounds + 1))
    with Ledger(ledger_location) as led:
        assert led.get_watermark("src", "s") == workers * rounds


def _migration_racer(location: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    led = Ledger(location)
    try:
        led.create_migration(
            strategy="dual_write", from_model="a", to_model="b", sink="s", target_sink="t",
            state="building", exclusive=True,
        )  # fmt: skip
        out.put("created")
    except MigrationError:
        out.put("refused")
    led.close()


def test_only_one_of_many_racing_processes_opens_a_migration(ledger_location: str) -> None:
    Ledger(ledger_location).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_migration_racer, args=(ledger_location, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert results == ["created", "refused", "refused", "refused"]


def test_taking_a_lease_waits_for_a_transaction_that_is_taking_it(ledger_location: str) -> None:
    """The read-then-take of a lease is one locked step: a taker that read "free" while another
    transaction was taking it would hold the lease beside it."""
    import threading

    from airflow_provider_drift.engine.ledger.liveness import HOST

    with Ledger(ledger_location) as first, Ledger(ledger_location) as second:
        outcome: list[object] = []
        with first._db.write() as conn:
            conn.lock("lease", "src", "s")  # what first._try_lease does before it reads
            taker = threading.Thread(target=lambda: outcome.append(second._try_lease("src", "s", "second")))
            taker.start()
            taker.join(0.5)
            assert taker.is_alive() and outcome == []  # waiting, not reading the lease as free
            conn.execute(
                "INSERT INTO leases (source, sink, holder, host, pid, acquired_at, heartbeat_at)"
                " VALUES ('src', 's', 'first', ?, ?, '2026-01-01', ?)",
                (HOST, os.getpid(), datetime.now(UTC).isoformat()),
            )
        taker.join(60)
        assert outcome == [(HOST, os.getpid(), "2026-01-01")]  # it saw the lease the first one took
        assert [tuple(r) for r in first._db.query("SELECT holder FROM leases")] == [("first",)]


def test_a_point_twice_in_one_recorded_batch_keeps_its_last_row(ledger_location: str) -> None:
    with Ledger(ledger_location) as led:
        led.record_upserts(
            "s", [Upsert("p1", "src", "k1", "h-old", 1), Upsert("p1", "src", "k1", "h-new", 2)], model="m",
            run_id="r",
        )  # fmt: skip
        assert led.lookup("s", ["p1"]) == {"p1": VectorState("h-new", "m", 2, False, False)}
        assert led.live_count("s") == 1


def test_the_current_points_view_and_batch_lookups_agree_on_what_is_stale(
    ledger_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large run reads the sink's current points once (known_points.py); a small one asks the
    ledger per batch. Both must find the same rows to write: new, changed, another model, marked,
    deleted — and nothing else."""
    import pyarrow as pa

    from airflow_provider_drift.engine.identity import content_hash, format_point_ids, point_id
    from airflow_provider_drift.engine.known_points import KnownPoints
    from airflow_provider_drift.engine.ledger import vectors
    from airflow_provider_drift.engine.rows import plan_rows

    keys = [f"k{i}" for i in range(9)]
    texts = [f"text {i}" for i in range(9)]
    with Ledger(ledger_location) as led:
        run = led.start_run(kind="embed", sink="s")

        def held(i: int, text: str, *, model: str = "m", source: str = "src", sink: str = "s") -> None:
            up = Upsert(point_id(source, keys[i]), source, keys[i], content_hash(text))
            led.record_upserts(sink, [up], model=model, run_id=run)

        for i in (0, 1, 2, 8):
            held(i, texts[i])  # current
        held(3, "an older text")  # changed
        held(4, texts[4], model="other")  # another model
        held(5, texts[5])
        led.mark_pending("s", [point_id("src", keys[5])], run_id=run)  # marked: not vouched for
        held(6, texts[6])
        led.record_deletes("s", [point_id("src", keys[6])], run_id=run)  # deleted
        held(7, texts[7], source="elsewhere")  # another source's point
        held(7, texts[7], sink="other-sink")  # another sink
        # keys[7] is new to (src, s); a hash of another shape (not drift's) must not break the view
        led.record_upserts("s", [Upsert(point_id("src", "odd"), "src", "odd", "abc")], model="m", run_id=run)

        view = KnownPoints.read(led, sink="s", source="src", model="m", limit=100)
        assert view is not None and len(view) == 6  # k0-k3, k8 (k3 with its older text) and "odd"
        assert KnownPoints.read(led, sink="s", source="src", model="m", limit=5) is None
        expected = sorted([point_id("src", "odd"), *(point_id("src", keys[i]) for i in (0, 1, 2, 3, 8))])
        for chunk in (1, 2, 50):  # chunk boundaries lose nothing
            monkeypatch.setattr(vectors, "_VIEW_CHUNK", chunk)
            got = led.current_points("s", source="src", model="m", limit=100)
            assert got is not None
            assert sorted(format_point_ids(got[0])) == expected
            raw = got[1].tobytes()  # (S16's tolist() would drop trailing zero bytes)
            assert sorted(raw[i : i + 16] for i in range(0, len(raw), 16)) == sorted(
                [bytes.fromhex("abc" + "0" * 29)]
                + [bytes.fromhex(content_hash(t)[:32]) for t in (*texts[:3], "an older text", texts[8])]
            )

        args = {"source": "src", "sink": "s", "model": "m", "ledger": led, "dedup": True}
        checks = {"key_col": "id", "text_col": "body", "on_invalid": "error"}
        plans = [
            plan_rows(pa.array(keys), pa.array(texts), **args, **checks, current=current)  # type: ignore[arg-type]
            for current in (None, view)
        ]
        assert plans[0].todo == plans[1].todo == [3, 4, 5, 6, 7]
        assert [p.n_deduped for p in plans] == [4, 4]
        assert (
            plans[1].select([3, 7])
            == plans[0].select([3, 7])
            == (
                [point_id("src", "k3"), point_id("src", "k7")],
                ["k3", "k7"],
                ["text 3", "text 7"],
                [content_hash("text 3"), content_hash("text 7")],
            )
        )


def test_a_run_reads_the_view_only_when_its_input_is_a_fair_share_of_the_known_points(
    ledger_location: str,
) -> None:
    """As the README says: at least a quarter of what the ledger knows for the source → one read
    up front; a small run into a large sink keeps the per-batch look-ups."""
    from airflow_provider_drift.engine.identity import content_hash, point_id
    from airflow_provider_drift.engine.point_writes import RowPlan

    with Ledger(ledger_location) as led:
        run = led.start_run(kind="embed", sink="s")
        ups = [Upsert(point_id("src", f"k{i}"), "src", f"k{i}", content_hash(f"t{i}")) for i in range(40)]
        led.record_upserts("s", ups, model="m", run_id=run)
        checks = {"key_col": "id", "text_col": "body", "on_invalid": "error"}
        plan = RowPlan("src", "s", "m", led, dedup=True, **checks)  # type: ignore[arg-type]
        view = plan.for_input(10).current
        assert view is not None and len(view) == 40
        assert plan.for_input(9).current is None  # 40 known > 4 x 9 input rows
        assert plan.for_input(0).current is None
        no_dedup = RowPlan("src", "s", "m", led, dedup=False, **checks)  # type: ignore[arg-type]
        assert no_dedup.for_input(1000).current is None

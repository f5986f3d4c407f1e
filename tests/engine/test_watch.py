"""watch(): the collection follows the Delta table through every kind of change, replay and fault.

After every run the collection must equal the table: the same point ids as
the table's keys, and each point's content hash that of the row's current text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.cli import main
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import (
    ChangeFeedError,
    ConfigError,
    InvalidRowsError,
    ProviderUnavailableError,
    SinkUnavailableError,
    SourceError,
)
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.records import WatchRun
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.status import status
from airflow_provider_drift.engine.watch import watch

from .cdc_helpers import (
    MODEL,
    CountingProvider,
    FlakySink,
    assert_collection_equals_table,
    set_commit_time,
    sink_state,
    write,
)
from .migration_helpers import pg_uri


@pytest.fixture
def table(tmp_path: Path) -> str:
    return write(tmp_path / "tickets", {"id": list(range(10)), "body": [f"ticket {i}" for i in range(10)]})


@pytest.fixture(params=["qdrant_local", "pgvector"])
def sink_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every watch behaviour holds on both sink families (pgvector: a real PostgreSQL)."""
    if request.param == "pgvector":
        return pg_uri(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_table_name"))
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider()


def run_watch(table: str, sink: object, provider: CountingProvider, **kw: object) -> WatchRun:
    return watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, provider=provider, **kw)  # type: ignore[arg-type]


def watermark(source: str, sink_uri: str) -> int | None:
    with Ledger() as led, open_sink(sink_uri) as sink:
        return led.get_watermark(source, sink.uri)


def test_first_run_embeds_the_snapshot_then_only_changes(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    first = run_watch(table, sink_uri, provider)
    assert (first.mode, first.since_version, first.to_version) == ("baseline", None, 0)
    assert (first.n_inserted, first.n_embedded) == (10, 10)
    assert watermark(first.source, sink_uri) == 0
    assert_collection_equals_table(sink_uri, table, first.source)

    again = run_watch(table, sink_uri, provider)  # nothing committed since: a no-op
    assert (again.mode, again.since_version, again.to_version, again.n_changes) == ("watermark", 0, 0, 0)
    assert len(provider.texts_sent) == 10


def test_every_kind_of_change_between_runs(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    steps = [
        ("insert", lambda: write(table, {"id": [10, 11], "body": ["ticket 10", "ticket 11"]}), (2, 0, 0, 2)),
        (
            "update",
            lambda: DeltaTable(table).update(predicate="id < 3", updates={"body": "concat(body, ' v2')"}),
            (0, 3, 0, 3),
        ),
        ("delete", lambda: DeltaTable(table).delete("id >= 8"), (0, 0, 4, 0)),
        (
            "merge",
            lambda: (
                DeltaTable(table)
                .merge(
                    pa.table({"id": [3, 4, 20], "body": ["ticket 3 merged", "ticket 4", "ticket 20"]}),
                    predicate="s.id = t.id",
                    source_alias="s",
                    target_alias="t",
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            ),
            # key 4 is rewritten with its old text: a change row, but nothing to embed
            (1, 1, 0, 2),
        ),
        (
            "predicate overwrite",
            lambda: write_deltalake(
                table,
                pa.table({"id": [5, 6], "body": ["ticket 5 v3", "ticket 6"]}),
                mode="overwrite",
                predicate="id >= 5 AND id <= 7",
            ),
            (0, 1, 1, 1),  # 5 rewritten, 6 rewritten with its old text, 7 gone
        ),
    ]
    for what, change, (ins, upd, dele, emb) in steps:
        before = len(provider.texts_sent)
        run = run_watch(table, sink_uri, provider)
        assert run.n_changes == 0, what
        change()
        run = run_watch(table, sink_uri, provider)
        assert (run.n_inserted, run.n_updated, run.n_deleted, run.n_embedded) == (ins, upd, dele, emb), what
        assert len(provider.texts_sent) - before == emb, what
        assert run.to_version == DeltaTable(table).version() == watermark(source, sink_uri), what
        assert_collection_equals_table(sink_uri, table, source)
    assert status(sink_uri).in_agreement


def test_delete_and_reinsert_in_one_window(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).delete("id = 1")
    write(table, {"id": [1], "body": ["ticket 1"]})
    run = run_watch(table, sink_uri, provider)
    assert (run.n_changes, run.n_unchanged, run.n_deleted, run.n_embedded, run.n_written) == (2, 1, 0, 0, 0)
    assert_collection_equals_table(sink_uri, table, source)


def test_update_back_and_forth_in_one_window_embeds_nothing(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).update(predicate="id = 2", updates={"body": "'something else'"})
    DeltaTable(table).update(predicate="id = 2", updates={"body": "'ticket 2'"})
    run = run_watch(table, sink_uri, provider)
    assert (run.n_unchanged, run.n_embedded, run.n_written) == (1, 0, 0)
    assert "something else" not in provider.texts_sent
    assert_collection_equals_table(sink_uri, table, source)


def test_two_keys_sharing_a_text_one_deleted(
    tmp_path: Path, sink_uri: str, provider: CountingProvider
) -> None:
    table = write(tmp_path / "t", {"id": [1, 2, 3], "body": ["same words", "same words", "other"]})
    source = run_watch(table, sink_uri, provider).source
    assert sorted(provider.texts_sent) == ["other", "same words"]
    DeltaTable(table).delete("id = 1")
    run = run_watch(table, sink_uri, provider)
    assert run.n_deleted == 1
    assert_collection_equals_table(sink_uri, table, source)  # key 2 keeps its vector
    write(table, {"id": [4], "body": ["same words"]})
    run = run_watch(table, sink_uri, provider)
    assert (run.n_inserted, run.n_embedded) == (1, 0)  # key 2's vector is reused, not paid again
    assert_collection_equals_table(sink_uri, table, source)


def test_deleted_text_reinserted_later_is_embedded_again(
    tmp_path: Path, sink_uri: str, provider: CountingProvider
) -> None:
    table = write(tmp_path / "t", {"id": [1, 2], "body": ["alpha", "beta"]})
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).delete("id = 1")
    gone = run_watch(table, sink_uri, provider)
    with Ledger() as led:
        prov = led.provenance(point_id(source, "1"))
    assert prov is not None and prov["deleted"] is True
    assert (prov["deleted_run_id"], prov["deleted_version"]) == (gone.run_id, 1)
    write(table, {"id": [1], "body": ["alpha"]})
    back = run_watch(table, sink_uri, provider)
    assert (back.n_inserted, back.n_embedded) == (1, 1)  # no live vector held the text any more
    assert provider.texts_sent.count("alpha") == 2
    assert_collection_equals_table(sink_uri, table, source)


def test_key_changing_update_moves_the_point(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).update(predicate="id = 9", updates={"id": "90"})
    run = run_watch(table, sink_uri, provider)
    assert (run.n_inserted, run.n_deleted, run.n_embedded) == (1, 1, 0)
    assert_collection_equals_table(sink_uri, table, source)


def test_embed_then_watch_address_the_same_points(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    embedded = embed(table, text_col="body", key_col="id", model=MODEL, sink=sink_uri, provider=provider)
    first = run_watch(table, sink_uri, provider)
    assert first.source == embedded.source
    assert (first.n_unchanged, first.n_embedded, first.n_written) == (10, 0, 0)
    assert_collection_equals_table(sink_uri, table, first.source)


def test_start_past_the_latest_version_is_a_no_op(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    run = run_watch(table, sink_uri, provider, since_version=50)
    assert (run.since_version, run.to_version, run.n_changes, run.status) == (50, 50, 0, "success")
    assert sink_state(sink_uri) == {}
    assert watermark(run.source, sink_uri) is None


def test_since_and_until_bound_the_window(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    for i in range(3):
        write(table, {"id": [100 + i], "body": [f"new {i}"]})
    part = run_watch(table, sink_uri, provider, until_version=2)
    assert (part.since_version, part.to_version, part.n_inserted) == (0, 2, 2)
    assert watermark(source, sink_uri) == 2
    rest = run_watch(table, sink_uri, provider)
    assert (rest.since_version, rest.to_version, rest.n_inserted) == (2, 3, 1)
    assert_collection_equals_table(sink_uri, table, source)


def test_table_without_change_data_feed(tmp_path: Path, sink_uri: str, provider: CountingProvider) -> None:
    path = str(tmp_path / "plain")
    write_deltalake(path, pa.table({"id": [1], "body": ["a"]}))
    with pytest.raises(ChangeFeedError, match="no change data feed"):
        run_watch(path, sink_uri, provider, since_version=-1)


def test_change_data_feed_enabled_after_version_0(
    tmp_path: Path, sink_uri: str, provider: CountingProvider
) -> None:
    path = str(tmp_path / "late")
    write_deltalake(path, pa.table({"id": [1], "body": ["a"]}))
    DeltaTable(path).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    with pytest.raises(ChangeFeedError, match="enabled after"):
        run_watch(path, sink_uri, provider, since_version=-1)
    # The default first run embeds the snapshot instead, then follows the feed.
    first = run_watch(path, sink_uri, provider)
    assert (first.mode, first.to_version) == ("baseline", 1)
    write_deltalake(path, pa.table({"id": [2], "body": ["b"]}), mode="append")
    assert run_watch(path, sink_uri, provider).n_inserted == 1
    assert_collection_equals_table(sink_uri, path, first.source)


def test_vacuumed_versions_fail_clearly_and_full_refresh_recovers(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'ticket 1 v2'"})
    write_deltalake(table, pa.table({"id": [1, 2], "body": ["one", "ticket 2"]}), mode="overwrite")
    DeltaTable(table).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    with pytest.raises(ChangeFeedError, match="vacuumed") as info:
        run_watch(table, sink_uri, provider)
    assert "--full-refresh" in (info.value.hint or "")
    assert watermark(source, sink_uri) == 0
    fixed = run_watch(table, sink_uri, provider, full_refresh=True)
    latest = DeltaTable(table).version()  # VACUUM commits too
    assert (fixed.mode, fixed.to_version, fixed.n_deleted, fixed.n_embedded) == ("full_refresh", latest, 8, 1)
    assert watermark(source, sink_uri) == latest
    assert_collection_equals_table(sink_uri, table, source)


def test_text_column_renamed(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    data = DeltaTable(table).to_pyarrow_table()
    renamed = pa.table({"id": data["id"], "text": data["body"].cast(pa.string())})
    write_deltalake(table, renamed, mode="overwrite", schema_mode="overwrite")
    with pytest.raises(SourceError, match="'body'") as info:
        run_watch(table, sink_uri, provider)
    assert "'text'" in str(info.value) and "new name" in (info.value.hint or "")
    run = watch(table, text_col="text", key_col="id", sink=sink_uri, model=MODEL, provider=provider)
    assert (run.n_unchanged, run.n_embedded) == (10, 0)  # rewritten rows, same texts: nothing paid
    assert_collection_equals_table(sink_uri, table, source, text="text")


def test_text_column_added(table: str, sink_uri: str, provider: CountingProvider) -> None:
    write(table, {"id": [10], "body": ["ticket 10"], "summary": ["short 10"]}, schema_mode="merge")
    kw = {"text_col": "summary", "key_col": "id", "sink": sink_uri, "model": MODEL, "provider": provider}
    with pytest.raises(InvalidRowsError, match="null or blank 'summary'"):
        watch(table, **kw)  # type: ignore[arg-type]
    first = watch(table, on_invalid="skip", **kw)  # type: ignore[arg-type]
    assert first.n_inserted == 1
    DeltaTable(table).update(predicate="id = 3", updates={"summary": "'short 3'"})
    run = watch(table, on_invalid="skip", **kw)  # type: ignore[arg-type]
    assert (run.n_inserted, run.n_embedded) == (1, 1)
    assert_collection_equals_table(sink_uri, table, first.source, text="summary")


def test_changed_rows_with_null_keys(table: str, sink_uri: str, provider: CountingProvider) -> None:
    source = run_watch(table, sink_uri, provider).source
    write(table, {"id": [None, 11], "body": ["orphan", "ticket 11"]})
    with pytest.raises(InvalidRowsError, match="null key") as info:
        run_watch(table, sink_uri, provider)
    assert "skip" in (info.value.hint or "")
    assert watermark(source, sink_uri) == 0 and len(sink_state(sink_uri)) == 10
    run = run_watch(table, sink_uri, provider, on_invalid="skip")
    assert (run.n_changes, run.n_inserted) == (2, 1)
    assert set(sink_state(sink_uri)) == {point_id(source, str(k)) for k in [*range(10), 11]}


def test_blank_text_is_rejected_or_loses_its_vector(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    source = run_watch(table, sink_uri, provider).source
    DeltaTable(table).update(predicate="id = 4", updates={"body": "'   '"})
    with pytest.raises(InvalidRowsError, match="blank"):
        run_watch(table, sink_uri, provider)
    run = run_watch(table, sink_uri, provider, on_invalid="skip")
    assert run.n_deleted == 1
    assert_collection_equals_table(sink_uri, table, source)


def test_sink_failing_half_way_keeps_the_watermark_and_rerun_completes(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    source = run_watch(table, sink_uri, provider).source
    write(table, {"id": list(range(100, 130)), "body": [f"new {i}" for i in range(30)]})
    DeltaTable(table).delete("id < 5")
    flaky = FlakySink(open_sink(sink_uri), fail_after=2)
    try:
        with pytest.raises(SinkUnavailableError, match="reset"):
            run_watch(table, flaky, provider, batch_size=10)
    finally:
        flaky.close()
    assert watermark(source, sink_uri) == 0
    with Ledger() as led:
        failed = led.recent_runs(limit=1)[0]
    assert (failed["kind"], failed["status"]) == ("watch", "failed")
    assert "SinkUnavailableError" in failed["error"]

    done = run_watch(table, sink_uri, provider, batch_size=10)
    assert done.n_stale_skipped > 0  # what the failed run applied is not applied twice
    assert watermark(source, sink_uri) == 2
    assert_collection_equals_table(sink_uri, table, source)
    assert status(sink_uri).in_agreement


def test_a_provider_failing_mid_window_keeps_what_was_paid_for(table: str, sink_uri: str) -> None:
    """The README's promise, for watch as for embed: what was embedded is written and recorded."""
    source = run_watch(table, sink_uri, CountingProvider()).source
    write(table, {"id": list(range(100, 130)), "body": [f"new {i}" for i in range(30)]})
    failing = CountingProvider(fail_on_call=2, partial=4)  # batch 1 paid, then 4 texts of batch 2
    with pytest.raises(ProviderUnavailableError, match="503"):
        run_watch(table, sink_uri, failing, batch_size=10)
    paid = failing.texts_sent
    assert len(paid) == 14
    assert status(sink_uri).points == 10 + 14 and status(sink_uri).in_agreement
    with Ledger() as led:
        failed = led.recent_runs(limit=1)[0]
    assert (failed["kind"], failed["status"], failed["n_embedded"], failed["n_written"]) == (
        "watch", "failed", 14, 14,
    )  # fmt: skip
    assert watermark(source, sink_uri) == 0  # the window is not complete: it is read again

    healthy = CountingProvider()
    done = run_watch(table, sink_uri, healthy, batch_size=10)
    assert (done.n_stale_skipped, done.n_inserted, done.n_embedded) == (14, 16, 16)
    assert set(healthy.texts_sent).isdisjoint(paid)  # the re-run pays only for the rest
    assert watermark(source, sink_uri) == 1
    assert_collection_equals_table(sink_uri, table, source)


def test_intervals_out_of_order_and_twice_end_equal_to_the_table(
    table: str, sink_uri: str, provider: CountingProvider
) -> None:
    source = run_watch(table, sink_uri, provider).source
    day = datetime(2026, 1, 1, tzinfo=UTC)
    commits = [  # (hour, change): the same keys change in several hours
        (1, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'hour 1 text'"})),
        (1, lambda: write(table, {"id": [50], "body": ["born in hour 1"]})),
        (2, lambda: DeltaTable(table).delete("id = 50 OR id = 2")),
        (2, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'hour 2 text'"})),
        (3, lambda: write(table, {"id": [2], "body": ["ticket 2 is back"]})),
        (3, lambda: DeltaTable(table).update(predicate="id = 1", updates={"body": "'ticket 1'"})),
    ]
    for version, (hour, change) in enumerate(commits, start=1):
        change()
        set_commit_time(table, version, day + timedelta(hours=hour, minutes=version))

    def interval(hour: int) -> WatchRun:
        return run_watch(
            table, sink_uri, provider, interval=(day + timedelta(hours=hour), day + timedelta(hours=hour + 1))
        )

    late = interval(3)
    assert (late.mode, late.since_version, late.to_version) == ("interval", 4, 6)
    assert watermark(source, sink_uri) == 0  # hours 1-2 are not applied yet: the watermark waits
    early = interval(1)
    assert (early.since_version, early.to_version, early.n_stale_skipped) == (0, 2, 1)  # key 1 is newer
    assert watermark(source, sink_uri) == 2
    middle = interval(2)
    assert middle.n_stale_skipped == 2  # key 1 and key 2 were already applied at version 5/6
    assert watermark(source, sink_uri) == 4
    assert_collection_equals_table(sink_uri, table, source)

    sent = len(provider.texts_sent)
    for hour in (3, 1, 2):  # replays change nothing and pay nothing
        again = interval(hour)
        assert again.n_written == again.n_deleted == 0
    assert len(provider.texts_sent) == sent
    assert_collection_equals_table(sink_uri, table, source)
    assert status(sink_uri).in_agreement


def test_a_zero_length_interval_is_refused(table: str, sink_uri: str, provider: CountingProvider) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="empty") as info:
        run_watch(table, sink_uri, provider, interval=(at, at))
    assert "CronDataIntervalTimetable" in (info.value.hint or "")


def test_cli_watch(table: str, sink_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "watch",
        "--table",
        table,
        "--text-col",
        "body",
        "--key-col",
        "id",
        "--sink",
        sink_uri,
        "--shadow-mode",
    ]
    assert main([*args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["mode"], first["n_inserted"], first["to_version"]) == ("baseline", 10, 0)
    DeltaTable(table).delete("id = 3")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "v0 -> v1" in out and "deleted" in out
    # --since-version skips the versions up to it: key 4's edit (v2) is not applied, the delete (v3) is.
    DeltaTable(table).update(predicate="id = 4", updates={"body": "'ticket 4, edited'"})
    DeltaTable(table).delete("id = 5")
    before = sink_state(sink_uri)
    assert main([*args, "--since-version", "2", "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)
    assert (skipped["since_version"], skipped["to_version"], skipped["n_changes"]) == (2, 3, 1)
    assert (skipped["n_deleted"], skipped["n_updated"], skipped["n_embedded"]) == (1, 0, 0)
    after = sink_state(sink_uri)
    assert after == {pid: state for pid, state in before.items() if state[0] != "5"}
    assert after[point_id(first["source"], "4")] == ("4", content_hash("ticket 4"))  # the old text
    assert watermark(first["source"], sink_uri) == 3
    missing = str(Path(table).parent / "nope")
    assert main([*args[:2], missing, *args[3:]]) == 2
    assert "hint:" in capsys.readouterr().err


def test_a_watch_process_never_imports_pandas(table: str, tmp_path: Path) -> None:
    """pyarrow imports pandas (~1 s, ~50 MiB) on any Python-to-Arrow conversion; a watch must not pay it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow_provider_drift.engine.watch import watch\n"
        f"watch({table!r}, text_col='body', key_col='id', model='shadow/m', dim=8, shadow_mode=True,\n"
        f"      sink='qdrant+local://{tmp_path}/qdrant/p')\n"
        "print('pandas' in sys.modules)\n"
    )
    write(table, {"id": [99], "body": ["one more"]})  # a change window, not only the first snapshot
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    write(table, {"id": [100], "body": ["and another"]})
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (first.stdout.split()[-1], again.stdout.split()[-1]) == ("False", "False")

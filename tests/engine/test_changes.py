"""Reading and collapsing the Delta change data feed, on real tables written with deltalake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.engine.changes import (
    CHANGE_SCHEMA,
    PendingChanges,
    collapse,
    open_feed,
    pending_changes,
)
from airflow_provider_drift.engine.errors import ChangeFeedError, InvalidRowsError, SourceError

from .cdc_helpers import set_commit_time, write


def final(table: str, start: int, end: int | None = None) -> dict[str, str | None]:
    """key → final text (None: deleted) over versions start..end."""
    feed = open_feed(table)
    changes = feed.read(
        start, end if end is not None else feed.latest_version(), key_col="id", text_col="body"
    )
    state = collapse(changes).to_pydict()
    return {
        k: (t if present else None)
        for k, t, present in zip(state["key"], state["text"], state["present"], strict=True)
    }


@pytest.fixture
def table(tmp_path: Path) -> str:
    return write(tmp_path / "t", {"id": [1, 2, 3], "body": ["one", "two", "three"]})


def test_every_reader_row_has_one_shape(table: str) -> None:
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'uno'"})
    changes = open_feed(table).read(1, 1, key_col="id", text_col="body")
    assert changes.schema == CHANGE_SCHEMA  # string_view cast to string, keys as point-id text
    rows = sorted(zip(changes["key"].to_pylist(), changes["_change_type"].to_pylist(), strict=True))
    assert rows == [("1", "update_postimage"), ("1", "update_preimage")]
    # Pre-image texts are never kept: they are never embedded.
    pre = changes.filter(pa.compute.equal(changes["_change_type"], "update_preimage"))
    assert pre["text"].to_pylist() == [None]


def test_insert_update_delete_merge_and_predicate_overwrite_collapse_to_the_table(table: str) -> None:
    dt = DeltaTable(table)
    dt.update(predicate="id = 1", updates={"body": "'one v2'"})
    DeltaTable(table).delete("id = 2")
    DeltaTable(table).merge(
        pa.table({"id": [3, 4], "body": ["three v2", "four"]}),
        predicate="s.id = t.id",
        source_alias="s",
        target_alias="t",
    ).when_matched_update_all().when_not_matched_insert_all().execute()
    # Predicate overwrite: delete + insert of key 4 in one commit must end present.
    write_deltalake(
        table, pa.table({"id": [4, 5], "body": ["four v2", "five"]}), mode="overwrite", predicate="id >= 4"
    )
    assert final(table, 1) == {"1": "one v2", "2": None, "3": "three v2", "4": "four v2", "5": "five"}


def test_delete_then_reinsert_in_one_window_ends_present(table: str) -> None:
    DeltaTable(table).delete("id = 2")
    write(table, {"id": [2], "body": ["two again"]})
    assert final(table, 1) == {"2": "two again"}


def test_update_back_and_forth_ends_at_the_last_text(table: str) -> None:
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'changed'"})
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'one'"})
    assert final(table, 1) == {"1": "one"}


def test_insert_then_delete_in_one_window_ends_absent(table: str) -> None:
    write(table, {"id": [9], "body": ["short-lived"]})
    DeltaTable(table).delete("id = 9")
    assert final(table, 1) == {"9": None}


def test_an_update_that_changes_the_key_removes_the_old_key(table: str) -> None:
    DeltaTable(table).update(predicate="id = 3", updates={"id": "30"})
    assert final(table, 1) == {"3": None, "30": "three"}


def test_one_commit_writing_a_key_twice_is_rejected(table: str) -> None:
    write(table, {"id": [7, 7], "body": ["a", "b"]})
    with pytest.raises(InvalidRowsError, match="not unique") as info:
        final(table, 1)
    assert info.value.hint


def test_collapse_of_nothing_is_empty() -> None:
    assert collapse(CHANGE_SCHEMA.empty_table()).num_rows == 0


def test_table_without_change_data_feed(tmp_path: Path) -> None:
    path = str(tmp_path / "plain")
    write_deltalake(path, pa.table({"id": [1], "body": ["a"]}))
    write_deltalake(path, pa.table({"id": [2], "body": ["b"]}), mode="append")
    # delta-rs would happily read version 1 as inserts; the feed must refuse instead.
    with pytest.raises(ChangeFeedError, match="no change data feed") as info:
        open_feed(path).read(1, 1, key_col="id", text_col="body")
    assert "enableChangeDataFeed" in (info.value.hint or "")


def test_change_data_feed_enabled_after_version_0(tmp_path: Path) -> None:
    path = str(tmp_path / "late")
    write_deltalake(path, pa.table({"id": [1], "body": ["a"]}))
    DeltaTable(path).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    write_deltalake(path, pa.table({"id": [2], "body": ["b"]}), mode="append")
    with pytest.raises(ChangeFeedError, match="enabled after") as info:
        open_feed(path).read(0, 2, key_col="id", text_col="body")
    assert "--full-refresh" in (info.value.hint or "")
    assert final(path, 1) == {"2": "b"}  # from the version it was enabled at, it reads


def test_vacuumed_versions_point_to_a_re_baseline(table: str) -> None:
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'x'"})
    write_deltalake(table, pa.table({"id": [1], "body": ["y"]}), mode="overwrite", configuration=None)
    DeltaTable(table).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    with pytest.raises(ChangeFeedError, match="vacuumed") as info:
        open_feed(table).read(1, 2, key_col="id", text_col="body")
    assert "--full-refresh" in (info.value.hint or "")


def test_missing_text_column_names_the_columns(table: str) -> None:
    with pytest.raises(SourceError, match="'text'") as info:
        open_feed(table).read(0, 0, key_col="id", text_col="text")
    assert "body" in str(info.value)


def test_pending_changes_counts_versions_and_rows_after_the_watermark(table: str) -> None:
    assert pending_changes(table, after_version=None) == PendingChanges(None, 0, 1)
    assert pending_changes(table, after_version=0).n_versions == 0
    write(table, {"id": [4, 5], "body": ["four", "five"]})
    DeltaTable(table).update(predicate="id = 1", updates={"body": "'uno'"})
    got = pending_changes(table, after_version=0, count_rows=True)
    assert got == PendingChanges(since_version=0, to_version=2, n_versions=2, n_rows=3)
    assert pending_changes(table, after_version=1, count_rows=True).n_rows == 1
    assert pending_changes(table, after_version=5).n_versions == 0  # past the latest: nothing, no error


def test_pending_changes_of_one_data_interval(table: str) -> None:
    for i, hour in enumerate([1, 1, 2], start=1):
        write(table, {"id": [10 + i], "body": [f"row {i}"]})
        set_commit_time(table, i, datetime(2026, 1, 1, hour, 30, tzinfo=UTC))
    hour1 = (datetime(2026, 1, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 2, tzinfo=UTC))
    hour2 = (datetime(2026, 1, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, 3, tzinfo=UTC))
    assert open_feed(table).versions_between(*hour1) == [1, 2]
    assert pending_changes(table, after_version=0, interval=hour1, count_rows=True) == PendingChanges(
        0, 2, 2, 2
    )
    assert pending_changes(table, after_version=0, interval=hour2) == PendingChanges(2, 3, 1)
    # Commits at or below the watermark are done: the interval has nothing pending.
    assert pending_changes(table, after_version=3, interval=hour2).n_versions == 0

"""The writer's ledger stage failing: the sink is written first, the error is clear, a re-run records.

Real faults: a second process holding the ledger's write lock past the wait
budget, and the ledger's disk filling up (a small tmpfs).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import (
    LedgerBusyError,
    LedgerError,
    StorageFullError,
    TransientError,
)
from airflow_provider_drift.engine.identity import content_hashes, point_ids
from airflow_provider_drift.engine.ledger import Ledger, connection
from airflow_provider_drift.engine.point_writes import PointRows, build_write_job
from airflow_provider_drift.engine.providers.shadow import ShadowProvider
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import Sink
from airflow_provider_drift.engine.vectorize import Vectorized
from airflow_provider_drift.engine.writer import BatchWriter

MODEL = "shadow/writer-test"
DIM = 16
KEYS = [str(k) for k in range(40)]
TEXTS = [f"ticket {k}: the writer test" for k in KEYS]


def write_job(run_id: str) -> object:
    """The rows of TEXTS as embed would build them (source ``tickets``)."""
    hashes = content_hashes(TEXTS)
    rows = PointRows(point_ids("tickets", KEYS), KEYS, TEXTS, hashes, [None] * len(KEYS))
    vectors = ShadowProvider(MODEL, dim=DIM).embed(TEXTS).vectors
    got = Vectorized(by_hash=dict(zip(hashes, vectors, strict=True)), embedded=set(hashes))
    return build_write_job(rows, got, source="tickets", model=MODEL, dim=DIM, run_id=run_id, store_text=False)


def rerun(sink: Sink, ledger: Ledger) -> None:
    """A normal embed of the same rows: what the ledger missed is written and recorded again."""
    done = embed(
        pa.table({"id": KEYS, "body": TEXTS}), source="tickets", text_col="body", key_col="id", model=MODEL,
        sink=sink, ledger=ledger, provider=ShadowProvider(MODEL, dim=DIM),
    )  # fmt: skip
    assert (done.n_written, ledger.live_count(sink.uri), sink.count()) == (40, 40, 40)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    with open_sink(f"qdrant+local://{tmp_path}/qdrant/tickets") as opened:
        opened.ensure_collection(DIM)
        yield opened


def test_ledger_locked_past_the_wait_fails_transiently_after_the_sink_is_written(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        run_id = ledger.start_run(kind="embed", model=MODEL, sink=sink.uri)
    monkeypatch.setattr(connection, "_BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(connection, "_MAX_LOCK_WAIT_S", 0.5)
    other = sqlite3.connect(path, isolation_level=None)  # another process's long write transaction
    other.execute("BEGIN IMMEDIATE")
    try:
        written: list[int] = []
        writer = BatchWriter(sink, path, on_written=written.append)
        writer.submit(write_job(run_id))  # type: ignore[arg-type]
        with pytest.raises(LedgerBusyError, match="stayed locked") as err:
            writer.close()
    finally:
        other.rollback()
        other.close()
    assert isinstance(err.value, TransientError) and isinstance(err.value, LedgerError)  # retry, exit 3
    assert (sink.count(), written) == (40, [])  # sink first: the points are there, unrecorded
    with Ledger(path) as ledger:
        assert ledger.live_count(sink.uri) == 0
        rerun(sink, ledger)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the ledger (root only): a disk that really fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("this test mounts a tmpfs: run the suite as root, as CI does")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_ledger_disk_full_is_a_clear_error_and_the_sink_is_written_first(
    small_disk: Path, sink: Sink
) -> None:
    path = small_disk / "ledger.db"
    held = Ledger(path)  # a task's open ledger: its WAL files exist, so opening another handle writes nothing
    run_id = held.start_run(kind="embed", model=MODEL, sink=sink.uri)
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # take every free block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        writer = BatchWriter(sink, path, on_written=lambda n: None)
        writer.submit(write_job(run_id))  # type: ignore[arg-type]
        with pytest.raises(StorageFullError, match="full") as err:
            writer.close()
    finally:
        held.close()
    assert isinstance(err.value, TransientError) and "free space" in (err.value.hint or "")  # exit 3
    assert sink.count() == 40  # sink first: the points are there, unrecorded

    filler.unlink()
    with Ledger(path) as ledger:
        assert ledger.live_count(sink.uri) == 0
        rerun(sink, ledger)

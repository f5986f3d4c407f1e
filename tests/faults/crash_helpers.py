"""Shared by the crash tests: generations of a table, a child run killed mid-write, exact checks."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.status import status

REPO = Path(__file__).resolve().parents[2]
MODEL = "openai/text-embedding-3-small"
DIM = 64


def texts(generation: int, n: int) -> dict[str, Any]:
    return {
        "id": list(range(n)),
        "body": [f"generation {generation}: ticket {i} about topic {i % 97}" for i in range(n)],
    }


class LedgerHog:
    """Another writer on the ledger file (a parallel task): holds write transactions on and off."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        self.held = False

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("COMMIT")
            self.held = False

    def close(self) -> None:
        self.release()
        self.conn.close()


def child_args(*, kind: str, table: str, sink: str, ledger: Path, batch_size: int = 1024) -> list[str]:
    args = {
        "kind": kind,
        "table": table,
        "sink": sink,
        "ledger": str(ledger),
        "model": MODEL,
        "dim": DIM,
        "batch_size": batch_size,
    }
    return [sys.executable, "-m", "tests.faults.crash_child", json.dumps(args)]


def run_and_kill(
    *, kind: str, table: str, sink: str, ledger: Path, after_upserts: int, batch_size: int = 1024
) -> int:
    """Start a child embed/watch while another connection keeps the ledger busy; SIGKILL it once
    the sink accepted ``after_upserts`` batches. Returns how many it had announced."""
    child = subprocess.Popen(
        child_args(kind=kind, table=table, sink=sink, ledger=ledger, batch_size=batch_size),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DRIFT_LEDGER_PATH": str(ledger)},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    hog = LedgerHog(ledger)
    upserts = 0
    try:
        assert lines.get(timeout=120) == "START"
        hog.hold()
        since = time.monotonic()
        deadline = since + 300
        while upserts < after_upserts:
            assert time.monotonic() < deadline, "the child made no progress"
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                line = ""
            if line is None or line == "DONE":
                err = child.stderr.read() if child.stderr else ""
                raise AssertionError(f"the child ended before it was killed: {err[-2000:]}")
            if line.startswith("RESULT"):
                continue
            if line.startswith("UPSERT"):
                upserts += 1
                continue
            # Mostly held, briefly free: the ledger is slow, as under a parallel writer.
            now = time.monotonic()
            if hog.held and now - since > 0.8:
                hog.release()
                since = now
            elif not hog.held and now - since > 0.05:
                hog.hold()
                since = now
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        hog.close()
    assert child.returncode == -signal.SIGKILL
    return upserts


def assert_exact(sink_uri: str, ledger: Path | str, source: str, rows: dict[str, Any]) -> None:
    """Key by key: the ledger records the source's text, and the point holds that text's vector."""
    keys = [str(k) for k in rows["id"]]
    bodies = list(rows["body"])
    want_vec = shadow_vectors(MODEL, bodies, DIM)
    ids = [point_id(source, k) for k in keys]
    sink = open_sink(sink_uri)
    with Ledger(ledger) as led:
        recorded = {r["point_id"]: r for chunk in led.live_points(sink.uri) for r in chunk}
    try:
        stored = {p.id: p for page in sink.scroll(with_vectors=True) for p in page}
    finally:
        sink.close()
    assert set(stored) == set(ids) == set(recorded)
    wrong_ledger = [
        k
        for k, pid, t in zip(keys, ids, bodies, strict=True)
        if recorded[pid]["content_hash"] != content_hash(t)
    ]
    pending = [pid for pid in ids if recorded[pid]["pending_run"] is not None]
    wrong_payload = [
        k
        for k, pid, t in zip(keys, ids, bodies, strict=True)
        if stored[pid].payload["content_hash"] != content_hash(t)
    ]
    got = np.vstack([np.asarray(stored[pid].vector, dtype=np.float32) for pid in ids])
    wrong_vector = [keys[i] for i in np.flatnonzero(np.abs(got - want_vec).max(axis=1) > 1e-5)]
    counts = {
        "ledger_not_source_text": len(wrong_ledger),
        "still_pending": len(pending),
        "payload_not_source_text": len(wrong_payload),
        "vector_not_source_text": len(wrong_vector),
    }
    assert counts == dict.fromkeys(counts, 0), (counts, wrong_vector[:5])
    report = status(sink_uri, ledger=ledger, verify=True)
    assert report.in_agreement and report.verify is not None
    assert report.verify["disagreements"] == 0 and report.verify["pending"] == 0
    assert report.verify["agreeing"] == len(ids) == report.points

"""The embedded sink's own promises: it persists on disk, survives a crash, and never shares a shard.

Other processes are real subprocesses running the real sink; they talk to the
test over stdin/stdout lines, so no test depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import SinkUnavailableError
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch
from airflow_provider_drift.engine.sinks.qdrant_local import QdrantLocalSink

REPO = Path(__file__).resolve().parents[2]

# A child process: ``write N`` upserts N points (ids point-0..N-1), ``hold`` waits for a line on stdin,
# ``crash`` kills itself without closing, ``count`` prints the count and a payload.
CHILD = r"""
import json, os, signal, sys, uuid
import numpy as np
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch
sink = open_sink(sys.argv[1], lock_timeout=float(sys.argv[2]))
for step in sys.argv[3:]:
    if step.startswith("write:"):
        n = int(step.split(":")[1])
        sink.ensure_collection(16)
        ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"point-{i}")) for i in range(n)]
        vectors = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
        sink.upsert(PointBatch(ids, vectors, [{"key": f"k{i}"} for i in range(n)]))
        print("written", flush=True)
    elif step == "hold":
        print("holding", flush=True)
        sys.stdin.readline()
    elif step == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif step == "count":
        first = str(uuid.uuid5(uuid.NAMESPACE_OID, "point-0"))
        got = sink.fetch([first])
        print(json.dumps({"count": sink.count(), "payload": got[first].payload if got else None}), flush=True)
sink.close()
print("closed", flush=True)
"""


def child(uri: str, *steps: str, lock_timeout: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, str(lock_timeout), *steps],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def expect(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdout is not None
    got = proc.stdout.readline().strip()
    if got != line and not got.startswith("{"):
        proc.kill()
        raise AssertionError(f"child said {got!r}, expected {line!r}; stderr: {proc.stderr.read()}")  # type: ignore[union-attr]
    return got


def points(n: int, dim: int, *, seed: int = 0) -> PointBatch:
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"point-{i}")) for i in range(n)]
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return PointBatch(ids, vectors, [{"key": f"k{i}"} for i in range(n)])


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"qdrant+local://{tmp_path}/store/docs"


def test_a_new_process_reloads_the_points_from_disk(uri: str) -> None:
    with open_sink(uri) as sink:
        sink.ensure_collection(16)
        sink.upsert(points(500, 16))
    proc = child(uri, "count")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0]) == {"count": 500, "payload": {"key": "k0"}}


def test_a_killed_writer_loses_no_acknowledged_points_and_frees_the_lock(uri: str) -> None:
    proc = child(uri, "write:300", "crash")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with open_sink(uri, lock_timeout=5) as sink:
        assert sink.count() == 300
        assert len({p.id for page in sink.scroll(batch_size=128) for p in page}) == 300


def test_a_second_process_waits_for_the_holder_or_fails_clearly(uri: str) -> None:
    holder = child(uri, "write:200", "hold")
    expect(holder, "written")
    expect(holder, "holding")

    impatient = open_sink(uri, lock_timeout=0.2)
    with pytest.raises(SinkUnavailableError) as err:
        impatient.count()
    message = str(err.value)
    assert "another run holds the embedded Qdrant collection" in message
    assert f"pid {holder.pid}" in message
    assert "Qdrant server" in message and "lock_timeout" in message

    result: dict[str, Any] = {}

    def patient() -> None:
        with open_sink(uri, lock_timeout=60) as sink:
            result["count"] = sink.count()
            sink.upsert(points(250, 16, seed=1))  # 200 overwritten, 50 new
            result["after"] = sink.count()

    waiter = threading.Thread(target=patient)
    waiter.start()
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    expect(holder, "closed")
    holder.wait(timeout=30)
    waiter.join(timeout=60)
    assert result == {"count": 200, "after": 250}
    with open_sink(uri) as sink:
        assert sink.count() == 250


def test_handles_in_one_process_share_the_shard(uri: str) -> None:
    a, b = open_sink(uri), open_sink(uri)
    a.ensure_collection(16)
    a.upsert(points(10, 16))
    assert b.count() == 10
    a.close()
    b.upsert(points(20, 16))
    assert b.count() == 20
    b.close()
    with open_sink(uri) as again:
        assert again.count() == 20


def test_bulk_upsert_stores_every_point(tmp_path: Path) -> None:
    """The throughput path (384-d, sink-sized batches) writes everything; speed is measured in dev/bench."""
    sink = open_sink(f"qdrant+local://{tmp_path}/bulk", batch_size=1000)
    sink.ensure_collection(384)
    n = 10_000
    for start in range(0, n, 2_500):
        ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"bulk-{i}")) for i in range(start, start + 2_500)]
        vectors = np.random.default_rng(start).normal(size=(2_500, 384)).astype(np.float32)
        sink.upsert(PointBatch(ids, vectors, [{"key": str(i)} for i in range(start, start + 2_500)]))
    assert sink.count() == n
    seen = [p.id for page in sink.scroll(batch_size=4_000) for p in page]
    assert len(seen) == n == len(set(seen))
    sink.close()


def test_aliases_live_in_one_json_file_and_follow_drops(tmp_path: Path) -> None:
    root = tmp_path / "store"
    v1 = open_sink(f"qdrant+local://{root}/docs_v1")
    v2 = v1.with_collection("docs_v2")
    v1.ensure_collection(16)
    v2.ensure_collection(16)
    assert isinstance(v1, QdrantLocalSink)
    v1.set_alias("docs", "docs_v1")
    v1.set_alias("docs", "docs_v2")
    assert json.loads((root / "aliases.json").read_text()) == {"aliases": {"docs": "docs_v2"}}
    assert not [p for p in root.iterdir() if p.name.startswith(".aliases-")]  # no scratch files left
    assert v1.list_collections() == ["docs_v1", "docs_v2"]
    v2.drop()
    assert v1.resolve_alias("docs") is None
    assert v1.list_collections() == ["docs_v1"]
    v1.close()
    v2.close()


def test_relative_and_home_paths_resolve_to_one_absolute_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    rel = open_sink("qdrant+local://data/docs")
    home = open_sink("qdrant+local://~/data/docs")
    absolute = open_sink(f"qdrant+local://{tmp_path}/data/docs")
    assert rel.uri == home.uri == absolute.uri == f"qdrant+local://{tmp_path.resolve()}/data/docs"
    monkeypatch.setenv("DRIFT_HOME", str(tmp_path / "dh"))
    assert open_sink("qdrant+local://docs").uri == f"qdrant+local://{(tmp_path / 'dh').resolve()}/qdrant/docs"

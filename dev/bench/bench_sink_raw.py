"""Measure the raw upsert rate of a sink: the ceiling the embed pipeline is compared against.

Vectors and payloads are made before the clock starts (in chunks, so memory
stays bounded); only ``sink.upsert`` calls and the final ``flush`` are timed.
Payloads carry the same fields the embed pipeline writes, so the comparison is fair.

Run::

    .venv/bin/python dev/bench/bench_sink_raw.py                       # qdrant+local, 384-d, 100k points
    .venv/bin/python dev/bench/bench_sink_raw.py --n 20000 --batch-size 512 --sink qdrant+memory://bench

Import from another benchmark (``dev/bench`` is not a package)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))   # from a file in dev/bench
    from bench_sink_raw import raw_upsert_rate
    raw_upsert_rate("qdrant+local:///tmp/bench/raw", n=100_000, dim=384, batch_size=1024)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def raw_upsert_rate(
    sink_uri: str,
    n: int,
    dim: int,
    batch_size: int,
    *,
    chunk: int = 10_000,
    fresh: bool = True,
    sink_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Upsert ``n`` random unit vectors into ``sink_uri`` and return the rate.

    Returns ``rows_per_s`` (wall clock) and ``rows_per_cpu_s`` (this process's
    CPU time, which stays meaningful on a shared, busy machine).
    ``batch_size`` is the sink's own request size; ``chunk`` is how many points
    each ``upsert`` call carries (the embed pipeline's batch). ``fresh`` drops
    the collection first so every run measures inserts, not overwrites.
    """
    from airflow_provider_drift.engine.identity import content_hash, point_ids
    from airflow_provider_drift.engine.sinks import open_sink
    from airflow_provider_drift.engine.sinks.base import (
        PAYLOAD_HASH,
        PAYLOAD_KEY,
        PAYLOAD_MODEL,
        PAYLOAD_RUN,
        PAYLOAD_SOURCE,
        PointBatch,
    )

    sink = open_sink(sink_uri, batch_size=batch_size, **(sink_options or {}))
    try:
        if fresh:
            sink.drop()
        sink.ensure_collection(dim)
        rng = np.random.default_rng(0)
        source = "bench://raw"
        spent = cpu = 0.0
        for start in range(0, n, chunk):
            keys = [str(i) for i in range(start, min(n, start + chunk))]
            vectors = rng.normal(size=(len(keys), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            payloads = [
                {
                    PAYLOAD_KEY: k,
                    PAYLOAD_SOURCE: source,
                    PAYLOAD_HASH: content_hash(k),
                    PAYLOAD_MODEL: "shadow/bench",
                    PAYLOAD_RUN: "bench-run",
                }
                for k in keys
            ]
            batch = PointBatch(point_ids(source, keys), vectors, payloads)
            t0, c0 = time.perf_counter(), time.process_time()
            sink.upsert(batch)
            spent += time.perf_counter() - t0
            cpu += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        sink.flush()
        spent += time.perf_counter() - t0
        cpu += time.process_time() - c0
        stored = sink.count()
    finally:
        sink.close()
    return {
        "sink": sink.uri,
        "n": n,
        "dim": dim,
        "batch_size": batch_size,
        "chunk": chunk,
        "seconds": round(spent, 3),
        "rows_per_s": round(n / spent, 1) if spent else float("inf"),
        "cpu_seconds": round(cpu, 3),
        # CPU-time rate: stable when other processes share the cores (wall rate is not)
        "rows_per_cpu_s": round(n / cpu, 1) if cpu else float("inf"),
        "count_after": stored,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", help="sink URI (default: qdrant+local:// in a temporary directory)")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drift-bench-raw-") as tmp:
        uri = args.sink or f"qdrant+local://{tmp}/raw"
        result = raw_upsert_rate(uri, args.n, args.dim, args.batch_size, chunk=args.chunk)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['sink']}: {result['n']:,} x {result['dim']}-d points in {result['seconds']:.2f} s "
            f"= {result['rows_per_s']:,.0f} points/s ({result['rows_per_cpu_s']:,.0f} per CPU-second; "
            f"batch {result['batch_size']}, "
            f"{result['count_after']:,} stored)"
        )


if __name__ == "__main__":
    main()

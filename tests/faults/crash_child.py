"""A child process for the crash tests: one embed or watch, announcing every sink write, to be killed.

``python -m tests.faults.crash_child '<json>'`` prints ``UPSERT <n>`` after each
batch the sink accepted, so the test can SIGKILL it at a known point without
sleeping a fixed time. The sink is the real one; only its ``upsert`` is
wrapped to announce.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> None:
    args: dict[str, Any] = json.loads(argv[0])
    from airflow_provider_drift.engine.embed import embed
    from airflow_provider_drift.engine.sinks import open_sink
    from airflow_provider_drift.engine.sinks.base import PointBatch
    from airflow_provider_drift.engine.watch import watch

    sink = open_sink(args["sink"])
    upsert = sink.upsert

    def announcing_upsert(batch: PointBatch, **options: Any) -> None:
        upsert(batch, **options)
        print(f"UPSERT {len(batch)}", flush=True)

    sink.upsert = announcing_upsert  # type: ignore[method-assign]
    common: dict[str, Any] = {
        "text_col": "body",
        "key_col": "id",
        "model": args["model"],
        "shadow_mode": True,
        "dim": args["dim"],
        "sink": sink,
        "ledger": args["ledger"],
        "batch_size": args["batch_size"],
    }
    print("START", flush=True)
    if args["kind"] == "embed":
        done: Any = embed(args["table"], **common)
    else:
        done = watch(args["table"], **common)
    sink.close()
    print("RESULT " + json.dumps(done.to_dict(), default=str), flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""DeltaCDFTrigger.run() never blocks the triggerer's event loop: every blocking call runs in a thread.

A heartbeat coroutine ticks every 10 ms while the trigger polls a real table
and ledger until a commit lands; the longest gap between ticks is how long
anything held the loop. The same probe catches a trigger that polls on the
loop itself, so the check can fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_drift.engine.sources import source_name
from airflow_provider_drift.engine.watch import watch
from airflow_provider_drift.triggers import DeltaCDFTrigger
from tests.engine.cdc_helpers import MODEL, write

#: generous for a shared 2-core machine; a blocking poll holds the loop for whole checks (≥ 0.3 s below)
MAX_GAP_S = 0.1


class CountingTrigger(DeltaCDFTrigger):
    """The real trigger; counts its polls and can stall each check like a slow table or disk."""

    stall_s = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.polls = 0

    def check(self) -> Any:
        time.sleep(self.stall_s)  # a slow read: fine in a thread, fatal on the loop
        found = super().check()
        self.polls += 1
        return found


class BlockingTrigger(CountingTrigger):
    """What the trigger must not be: polling on the event loop itself."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            payload = self.poll()
            if payload is not None:
                yield TriggerEvent(payload)
                return
            await asyncio.sleep(self.poll_interval)


def _loop_gap_while(trigger: DeltaCDFTrigger) -> tuple[list[TriggerEvent], float]:
    """Run the trigger to its event under a heartbeat; return its events and the longest heartbeat gap."""

    async def main() -> tuple[list[TriggerEvent], float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        events = [event async for event in trigger.run()]
        done.set()
        await beat
        return events, max(gaps)

    return asyncio.run(main())


def _watched_table(tmp_path: Path) -> tuple[str, str, str]:
    table = write(tmp_path / "t", {"id": [1, 2], "body": ["one", "two"]})
    sink = f"qdrant+local://{tmp_path}/qdrant/t"
    run = watch(table, text_col="body", key_col="id", sink=sink, model=MODEL, shadow_mode=True)
    return table, run.sink, str(tmp_path / "ledger.db")  # the suite's DRIFT_LEDGER_PATH


def _commit_after(table: str, trigger: CountingTrigger, polls: int) -> threading.Thread:
    def commit() -> None:
        while trigger.polls < polls:
            time.sleep(0.01)
        write(table, {"id": [3], "body": ["three"]})

    thread = threading.Thread(target=commit, daemon=True)
    thread.start()
    return thread


def test_polling_a_real_table_until_a_commit_lands_never_holds_the_loop(tmp_path: Path) -> None:
    table, sink_uri, ledger = _watched_table(tmp_path)
    trigger = CountingTrigger(
        table=table, source=source_name(table), sink_uri=sink_uri, ledger_path=ledger, poll_interval=0.05
    )
    trigger.stall_s = 0.3
    committer = _commit_after(table, trigger, polls=2)
    events, gap = _loop_gap_while(trigger)
    committer.join(timeout=30)
    assert [e.payload for e in events] == [
        {
            "status": "success",
            "pending": {"since_version": 0, "to_version": 1, "n_versions": 1, "n_rows": None},
        }
    ]
    assert trigger.polls >= 3  # two polls found nothing, a later one saw the commit
    assert gap < MAX_GAP_S, f"the event loop was blocked for {gap:.3f} s"


def test_the_probe_catches_a_trigger_that_polls_on_the_loop(tmp_path: Path) -> None:
    table, sink_uri, ledger = _watched_table(tmp_path)
    trigger = BlockingTrigger(
        table=table, source=source_name(table), sink_uri=sink_uri, ledger_path=ledger, poll_interval=0.05
    )
    trigger.stall_s = 0.3
    committer = _commit_after(table, trigger, polls=2)
    events, gap = _loop_gap_while(trigger)
    committer.join(timeout=30)
    assert [e.payload["status"] for e in events] == ["success"]
    assert gap >= 0.3  # every blocking check held the loop for its whole length

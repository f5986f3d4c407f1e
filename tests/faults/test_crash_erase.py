"""A process killed between an erasure's sink delete and its ledger record leaves no false claim.

Without the mark the ledger set before the delete, it would still record the
erased key's vector as live: a re-embed of the same text would trust that
claim and skip the row, and the point would stay missing for good.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.identity import point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.verify import verify

MODEL = "openai/text-embedding-3-small"

_CHILD = """
import os, sys
from airflow_provider_drift.engine.erase import erase
from airflow_provider_drift.engine.ledger import Ledger

def die(*args, **kwargs):  # the sink has deleted the point; the ledger never hears of it
    os._exit(9)

Ledger.record_deletes = die
erase(sys.argv[1], "2", ledger=sys.argv[2])
"""


def test_a_kill_after_the_sink_delete_leaves_the_row_to_be_rewritten(tmp_path: Path) -> None:
    table = str(tmp_path / "tickets")
    write_deltalake(table, pa.table({"id": [1, 2, 3], "body": ["alpha", "beta", "gamma"]}))
    sink, ledger = f"qdrant+local://{tmp_path}/qdrant/t", str(tmp_path / "ledger.db")
    options = {"text_col": "body", "key_col": "id", "model": MODEL, "sink": sink, "ledger": ledger}
    first = embed(table, shadow_mode=True, **options)

    argv = [sys.executable, "-c", _CHILD, first.source, ledger]
    child = subprocess.run(argv, capture_output=True, text=True)
    assert child.returncode == 9, child.stderr
    pid = point_id(first.source, "2")
    with open_sink(sink) as opened:
        assert opened.fetch([pid]) == {}  # the sink delete happened before the kill

    again = embed(table, shadow_mode=True, **options)
    assert (again.n_embedded + again.n_reused, again.n_written) == (1, 1)  # only the erased row
    with open_sink(sink) as opened, Ledger(ledger) as led:
        assert opened.count() == 3 and pid in opened.fetch([pid])
        report = verify(opened, led)
    assert (report.disagreements, report.agreeing, report.pending) == (0, 3, 0)

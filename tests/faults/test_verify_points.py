"""status(verify=True) finds what a count cannot, and repair (embed, watch --full-refresh) fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_drift.cli import main as drift
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch
from airflow_provider_drift.engine.status import status
from airflow_provider_drift.engine.watch import watch
from tests.engine.cdc_helpers import write
from tests.engine.migration_helpers import pg_uri

from .crash_helpers import DIM, MODEL, assert_exact, texts

N = 300


@pytest.fixture(params=["qdrant_local", "pgvector"])
def sink_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "pgvector":
        return pg_uri(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_table_name"))
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


def _embed(table: str, sink_uri: str, ledger: Path, **kw: object) -> object:
    return embed(
        table, text_col="body", key_col="id", model=MODEL, shadow_mode=True, dim=DIM, sink=sink_uri,
        ledger=ledger, batch_size=100, **kw,
    )  # fmt: skip


def _plant(sink_uri: str, source: str) -> dict[str, str]:
    """Write behind drift's back: key 5 gets another text's vector and hash, key 7 vanishes,
    a foreign point appears. Returns the point ids."""
    wrong_text = "a text the source never had"
    ids = {"wrong": point_id(source, "5"), "gone": point_id(source, "7"), "foreign": point_id(source, "9999")}
    sink = open_sink(sink_uri)
    try:
        payload = {"key": "5", "source": source, "content_hash": content_hash(wrong_text), "model": MODEL}
        foreign = {"key": "9999", "source": source, "content_hash": content_hash("x"), "model": MODEL}
        sink.upsert(
            PointBatch(
                [ids["wrong"], ids["foreign"]],
                shadow_vectors(MODEL, [wrong_text, "x"], DIM),
                [payload, foreign],
            )
        )
        sink.delete([ids["gone"]])
        sink.flush()
    finally:
        sink.close()
    return ids


def test_verify_reports_every_planted_disagreement_and_repair_fixes_them(
    tmp_path: Path, ledger_path: Path, sink_uri: str
) -> None:
    table = write(tmp_path / "t", texts(0, N))
    source = _embed(table, sink_uri, ledger_path).source  # type: ignore[attr-defined]
    clean = status(sink_uri, ledger=ledger_path, verify=True)
    assert clean.in_agreement and clean.verify is not None
    assert (clean.verify["agreeing"], clean.verify["disagreements"]) == (N, 0)

    ids = _plant(sink_uri, source)
    counted = status(sink_uri, ledger=ledger_path)
    assert counted.in_agreement  # one point more, one less: the count check cannot see it
    found = status(sink_uri, ledger=ledger_path, verify=True)
    v = found.verify
    assert v is not None and not found.in_agreement
    assert (v["agreeing"], v["mismatched"], v["missing_in_sink"], v["unknown_to_ledger"]) == (N - 2, 1, 1, 1)
    assert v["examples"]["mismatched"] == [
        {
            "point_id": ids["wrong"],
            "source": source,
            "key": "5",
            "ledger_hash": content_hash(texts(0, N)["body"][5]),
            "sink_hash": content_hash("a text the source never had"),
            "ledger_model": MODEL,
            "sink_model": MODEL,
        }
    ]
    assert [e["point_id"] for e in v["examples"]["missing_in_sink"]] == [ids["gone"]]
    assert [e["point_id"] for e in v["examples"]["unknown_to_ledger"]] == [ids["foreign"]]

    plain = _embed(table, sink_uri, ledger_path)  # dedup trusts the ledger: nothing is rewritten
    assert plain.n_written == 0  # type: ignore[attr-defined]
    repaired = _embed(table, sink_uri, ledger_path, repair=True, delete_missing=True)
    assert (repaired.n_written, repaired.n_embedded, repaired.n_deleted) == (2, 2, 1)  # type: ignore[attr-defined]
    assert_exact(sink_uri, ledger_path, source, texts(0, N))


def test_watch_full_refresh_repairs(tmp_path: Path, ledger_path: Path) -> None:
    sink_uri = f"qdrant+local://{tmp_path}/qdrant/tickets"
    table = write(tmp_path / "t", texts(0, N))
    common = {"text_col": "body", "key_col": "id", "model": MODEL, "shadow_mode": True, "dim": DIM}
    first = watch(table, sink=sink_uri, ledger=ledger_path, **common)  # type: ignore[arg-type]
    _plant(sink_uri, first.source)
    assert watch(table, sink=sink_uri, ledger=ledger_path, **common).n_written == 0  # type: ignore[arg-type]
    done = watch(table, sink=sink_uri, ledger=ledger_path, full_refresh=True, **common)  # type: ignore[arg-type]
    assert (done.n_written, done.n_deleted) == (2, 1)
    assert_exact(sink_uri, ledger_path, first.source, texts(0, N))


def test_drift_status_verify_prints_the_disagreements(
    tmp_path: Path, ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink_uri = f"qdrant+local://{tmp_path}/qdrant/tickets"
    table = write(tmp_path / "t", texts(0, N))
    source = _embed(table, sink_uri, ledger_path).source  # type: ignore[attr-defined]
    ids = _plant(sink_uri, source)
    assert drift(["status", "--sink", sink_uri, "--verify", "--ledger", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert f"{N - 2:,} agree, 1 other text or model, 1 missing in sink, 1 unknown to ledger" in out
    assert ids["wrong"] in out and ids["gone"] in out and ids["foreign"] in out
    assert drift(["embed", "--table", table, "--sink", sink_uri, "--text-col", "body", "--key-col", "id",
                  "--model", MODEL, "--shadow-mode", "--dim", str(DIM), "--repair", "--delete-missing",
                  "--ledger", str(ledger_path)]) == 0  # fmt: skip
    assert_exact(sink_uri, ledger_path, source, texts(0, N))

"""erase(): the vector is gone from every sink, and the ledger holds the proof."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from airflow_provider_drift.cli import main
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.erase import erase
from airflow_provider_drift.engine.errors import SinkUnavailableError
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.ledger import Ledger, Upsert
from airflow_provider_drift.engine.sinks import open_sink

from .cdc_helpers import MODEL, CountingProvider, sink_state, write
from .migration_helpers import pg_uri

DOWN_SINK = "qdrant://127.0.0.1:9/tickets"  # nothing listens on the discard port: a server that is down


@pytest.fixture
def table(tmp_path: Path) -> str:
    return write(tmp_path / "tickets", {"id": [1, 2, 3], "body": ["alpha", "beta", "gamma"]})


@pytest.fixture
def pg_sink(pg_dsn: str, pg_table_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A pgvector sink URI with its user; PGUSER lets the ledger's credential-free URI reach it too."""
    monkeypatch.setenv("PGUSER", conninfo_to_dict(pg_dsn).get("user") or "postgres")
    return pg_uri(pg_dsn, pg_table_name)


@pytest.fixture
def sinks(tmp_path: Path, table: str, pg_sink: str) -> tuple[str, str, str]:
    """The table embedded into two sinks, embedded Qdrant and pgvector; returns (source, sink a, sink b)."""
    provider = CountingProvider()
    uris = [f"qdrant+local://{tmp_path}/qdrant/a", pg_sink]
    runs = [
        embed(table, text_col="body", key_col="id", model=MODEL, sink=uri, provider=provider) for uri in uris
    ]
    return runs[0].source, runs[0].sink, runs[1].sink


def test_erase_removes_the_vector_from_every_sink_and_records_proof(sinks: tuple[str, str, str]) -> None:
    source, sink_a, sink_b = sinks
    pid = point_id(source, "2")
    done = erase(source, 2)
    assert (done.status, done.key, done.point_id) == ("erased", "2", pid)
    assert sorted(s.sink for s in done.sinks) == sorted([sink_a, sink_b])
    assert all(s.verified and s.existed_before for s in done.sinks)
    for uri in (sink_a, sink_b):
        with open_sink(uri) as sink:
            assert sink.fetch([pid]) == {}
        assert set(sink_state(uri)) == {point_id(source, "1"), point_id(source, "3")}

    with Ledger() as led:
        prov = led.provenance(pid)
        proofs = led.erasures_for_key(source, "2")
        run = led.get_run(done.run_id)
    assert prov is not None and prov["deleted"] is True and prov["deleted_run_id"] == done.run_id
    assert {c["sink"] for c in prov["copies"]} == {sink_a, sink_b} and all(
        c["deleted"] for c in prov["copies"]
    )
    assert len(prov["erasures"]) == 2 and all(e["verified"] for e in prov["erasures"])
    for proof in proofs:
        assert proof["verified"] and proof["verified_at"]
        evidence = proof["proof"]
        assert evidence["existed_before"] is True and evidence["fetch_after"] == []
        assert evidence["count_after"] == evidence["count_before"] - 1
        assert evidence["payload_before"]["content_hash"] == content_hash("beta")
        assert "text" not in evidence["payload_before"]
    assert run is not None and (run["kind"], run["status"], run["n_deleted"]) == ("erase", "success", 2)


def test_a_sink_that_needs_credentials_is_reached_through_a_given_uri(
    sinks: tuple[str, str, str], pg_sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _, sink_b = sinks
    monkeypatch.delenv("PGUSER")  # the ledger records sinks without secrets: it cannot log in alone
    with pytest.raises(SinkUnavailableError, match="could not prove"):
        erase(source, 2)
    done = erase(source, 2, sinks=[pg_sink])
    assert done.status == "erased"
    pg_copy = next(s for s in done.sinks if s.sink == sink_b)
    assert pg_copy.verified and pg_copy.existed_before


def test_erasing_again_proves_the_vector_is_still_gone(sinks: tuple[str, str, str]) -> None:
    source = sinks[0]
    erase(source, "3")
    again = erase(source, "3")
    assert again.status == "erased" and all(s.verified and s.existed_before is False for s in again.sinks)
    with Ledger() as led:
        assert len(led.erasures_for_key(source, "3")) == 4


def test_a_key_the_ledger_never_saw_is_not_found(sinks: tuple[str, str, str]) -> None:
    done = erase(sinks[0], "404")
    assert (done.status, done.sinks, done.run_id) == ("not_found", [], "")


def test_an_unreachable_sink_is_recorded_unverified_and_the_others_are_erased(
    sinks: tuple[str, str, str],
) -> None:
    source, sink_a, _ = sinks
    pid = point_id(source, "1")
    with Ledger() as led:  # the key was also written to a server that is down now
        led.record_upserts(
            DOWN_SINK, [Upsert(pid, source, "1", content_hash("alpha"), 0)], model=MODEL, run_id="r"
        )
    with pytest.raises(SinkUnavailableError, match="could not prove") as info:
        erase(source, 1, sink_options={DOWN_SINK: {"timeout": 2}})
    assert "re-run" in (info.value.hint or "")
    with Ledger() as led:
        proofs = {p["sink"]: p for p in led.erasures_for_key(source, "1")}
    assert proofs[DOWN_SINK]["verified"] is False and "unreachable" in proofs[DOWN_SINK]["proof"]["error"]
    assert proofs[sink_a]["verified"] is True
    with open_sink(sink_a) as sink:
        assert sink.fetch([pid]) == {}


def test_cli_erase(sinks: tuple[str, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    source = sinks[0]
    assert main(["erase", "--source", source, "--key", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "erased" and len(out["sinks"]) == 2
    assert main(["erase", "--source", source, "--key", "2"]) == 0
    assert "verified: the sink no longer returns it" in capsys.readouterr().out
    assert main(["erase", "--source", "delta:///no/such/table", "--key", "1"]) == 2  # input error
    assert "nothing to erase" in capsys.readouterr().err

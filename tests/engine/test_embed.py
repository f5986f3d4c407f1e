"""embed(): identity, dedup, pay-once, bad input, and crash safety, on real Delta + a real sink."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import (
    ConfigError,
    DimensionMismatchError,
    InvalidRowsError,
    ProviderUnavailableError,
    SinkUnavailableError,
    SourceError,
    UnknownModelError,
)
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.providers.base import Embeddings
from airflow_provider_drift.engine.providers.openai_provider import PartialEmbeddings
from airflow_provider_drift.engine.providers.shadow import ShadowProvider
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.status import status

from .migration_helpers import pg_uri

MODEL = "openai/text-embedding-3-small"


class CountingProvider(ShadowProvider):
    """Shadow vectors, plus a log of every text sent: the bill a real provider would send."""

    def __init__(
        self, model: str = MODEL, *, dim: int = 64, fail_on_call: int | None = None, partial: int = 0
    ) -> None:
        super().__init__(model, dim=dim)
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.partial = partial

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            # Like OpenAIProvider: requests that succeeded before the failure ride on the error.
            got = list(texts[: self.partial])
            self.calls.append(got)
            error = ProviderUnavailableError("provider kept answering 503", hint="retry later")
            if got:
                done = super().embed(got)
                error.partial = PartialEmbeddings(list(range(len(got))), done)  # type: ignore[attr-defined]
            raise error
        self.calls.append(list(texts))
        result = super().embed(texts)
        return Embeddings(result.vectors, result.tokens, cost_usd=result.tokens * 0.02 / 1e6)

    @property
    def texts_sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


def tickets(n: int, *, start: int = 0) -> dict[str, list]:
    return {
        "id": list(range(start, start + n)),
        "body": [f"ticket {i}: cannot log in after reset" for i in range(start, start + n)],
    }


def write(path: Path, data: dict[str, list], mode: str = "append") -> str:
    write_deltalake(
        str(path), pa.table(data), mode=mode, configuration={"delta.enableChangeDataFeed": "true"}
    )
    return str(path)


def sink_state(uri: str) -> dict[str, tuple[str, str]]:
    """point id → (key, content hash) for every point in the sink."""
    sink = open_sink(uri)
    try:
        return {p.id: (p.payload["key"], p.payload["content_hash"]) for page in sink.scroll() for p in page}
    finally:
        sink.close()


def expected_state(table: str, source: str) -> dict[str, tuple[str, str]]:
    data = DeltaTable(table).to_pyarrow_table().to_pydict()
    return {
        point_id(source, str(k)): (str(k), content_hash(t))
        for k, t in zip(data["id"], data["body"], strict=True)
    }


@pytest.fixture
def table(tmp_path: Path) -> str:
    return write(tmp_path / "tickets", tickets(50))


@pytest.fixture(params=["qdrant_local", "pgvector"])
def sink_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every embed behaviour holds on both sink families (pgvector: a real PostgreSQL)."""
    if request.param == "pgvector":
        return pg_uri(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_table_name"))
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


def run_embed(table: str, sink_uri: str, provider: CountingProvider, **kw):  # type: ignore[no-untyped-def]
    return embed(
        table, text_col="body", key_col="id", model=provider.model, sink=sink_uri, provider=provider, **kw
    )


def test_first_run_embeds_everything_and_rerun_sends_nothing(table: str, sink_uri: str) -> None:
    provider = CountingProvider()
    first = run_embed(table, sink_uri, provider)
    assert (first.n_rows_processed, first.n_rows_deduped, first.n_embedded, first.n_written) == (
        50,
        0,
        50,
        50,
    )
    assert first.cost_usd == pytest.approx(first.tokens * 0.02 / 1e6)
    source = first.source
    assert sink_state(sink_uri) == expected_state(table, source)

    second = run_embed(table, sink_uri, provider)
    assert (second.n_rows_processed, second.n_rows_deduped, second.n_embedded, second.n_written) == (
        50,
        50,
        0,
        0,
    )
    assert len(provider.texts_sent) == 50  # nothing more was paid for
    assert second.tokens == 0 and second.cost_usd == 0

    st = status(sink_uri)
    assert (st.points, st.ledger_points, st.in_agreement) == (50, 50, True)
    assert st.models == {MODEL: 50}
    assert st.runs == 2


def test_updating_n_rows_reembeds_exactly_n_and_leaves_no_stale_point(table: str, sink_uri: str) -> None:
    provider = CountingProvider()
    run_embed(table, sink_uri, provider)
    dt = DeltaTable(table)
    dt.update(predicate="id < 7", updates={"body": "concat(body, ' (edited)')"})
    again = run_embed(table, sink_uri, provider)
    assert (again.n_embedded, again.n_written, again.n_rows_deduped) == (7, 7, 43)
    assert sorted(provider.calls[-1]) == sorted(
        f"ticket {i}: cannot log in after reset (edited)" for i in range(7)
    )
    assert sink_state(sink_uri) == expected_state(table, again.source)
    assert status(sink_uri).in_agreement


def test_two_keys_with_one_text_are_two_points_and_one_provider_call(tmp_path: Path, sink_uri: str) -> None:
    table = write(tmp_path / "t", {"id": [1, 2, 3], "body": ["same words", "same words", "other words"]})
    provider = CountingProvider()
    run = run_embed(table, sink_uri, provider)
    assert sorted(provider.texts_sent) == ["other words", "same words"]
    assert (run.n_embedded, run.n_written) == (2, 3)
    state = sink_state(sink_uri)
    assert len(state) == 3
    # Deleting one of the twins removes exactly its point; the other keeps its vector.
    DeltaTable(table).delete("id = 1")
    pruned = run_embed(table, sink_uri, provider, delete_missing=True)
    assert pruned.n_deleted == 1 and pruned.n_embedded == 0
    remaining = sink_state(sink_uri)
    assert set(remaining) == set(expected_state(table, run.source))
    assert point_id(run.source, "2") in remaining and point_id(run.source, "1") not in remaining
    assert status(sink_uri).in_agreement


def test_text_already_paid_for_is_reused_across_runs(tmp_path: Path, sink_uri: str) -> None:
    table = write(tmp_path / "t", {"id": [1], "body": ["the original words"]})
    provider = CountingProvider()
    run_embed(table, sink_uri, provider)
    write(Path(table), {"id": [2], "body": ["the original words"]})
    run = run_embed(table, sink_uri, provider)
    assert (run.n_embedded, run.n_reused, run.n_written) == (0, 1, 1)
    assert provider.texts_sent == ["the original words"]


def test_deleted_row_reinserted_with_same_text_is_embedded_again(tmp_path: Path, sink_uri: str) -> None:
    table = write(tmp_path / "t", {"id": [1, 2], "body": ["alpha text", "beta text"]})
    provider = CountingProvider()
    run_embed(table, sink_uri, provider)
    DeltaTable(table).delete("id = 1")
    run_embed(table, sink_uri, provider, delete_missing=True)
    write(Path(table), {"id": [1], "body": ["alpha text"]})
    back = run_embed(table, sink_uri, provider)
    assert back.n_written == 1 and back.n_embedded == 1  # no live vector held the text any more
    led = Ledger()
    prov = led.provenance(point_id(back.source, "1"))
    assert prov is not None and prov["deleted"] is False and prov["run_id"] == back.run_id
    assert status(sink_uri).in_agreement


def test_dry_run_plans_without_sending_or_writing(table: str, sink_uri: str) -> None:
    provider = CountingProvider()
    plan = run_embed(table, sink_uri, provider, dry_run=True)
    assert plan.dry_run and plan.status == "planned"
    assert (plan.n_rows_processed, plan.n_embedded, plan.n_written) == (50, 50, 50)
    assert plan.tokens > 0 and plan.cost_usd is not None
    assert provider.calls == []
    assert status(sink_uri).points == 0
    assert Ledger().recent_runs() == []


def test_shadow_mode_serves_any_model_name_for_free(table: str, sink_uri: str) -> None:
    run = embed(
        table, text_col="body", key_col="id", model="acme/brand-new", dim=32, sink=sink_uri, shadow_mode=True
    )
    assert run.n_embedded == 50
    # Shadow mode is free by definition; the price question is the provider's (see provider tests).
    assert run.cost_usd == 0.0


def test_provider_outage_half_way_keeps_what_was_paid_and_rerun_pays_the_rest(
    tmp_path: Path, sink_uri: str
) -> None:
    table = write(tmp_path / "t", tickets(40))
    failing = CountingProvider(fail_on_call=3)
    with pytest.raises(ProviderUnavailableError):
        run_embed(table, sink_uri, failing, batch_size=10)
    paid = failing.texts_sent
    assert len(paid) == 20
    runs = Ledger().recent_runs()
    assert runs[0]["status"] == "failed" and "503" in runs[0]["error"]
    assert runs[0]["n_embedded"] == 20
    assert status(sink_uri).in_agreement and status(sink_uri).points == 20

    healthy = CountingProvider()
    done = run_embed(table, sink_uri, healthy, batch_size=10)
    assert (done.n_rows_deduped, done.n_embedded) == (20, 20)
    assert set(healthy.texts_sent).isdisjoint(paid)
    assert sink_state(sink_uri) == expected_state(table, done.source)


def test_vectors_received_before_a_failure_are_kept(tmp_path: Path, sink_uri: str) -> None:
    table = write(tmp_path / "t", tickets(30))
    failing = CountingProvider(fail_on_call=2, partial=4)
    with pytest.raises(ProviderUnavailableError):
        run_embed(table, sink_uri, failing, batch_size=10)
    paid = failing.texts_sent
    assert len(paid) == 14  # batch 1, plus 4 texts of batch 2 before the outage
    assert status(sink_uri).points == 14 and status(sink_uri).in_agreement
    healthy = CountingProvider()
    done = run_embed(table, sink_uri, healthy, batch_size=10)
    assert done.n_embedded == 16 and set(healthy.texts_sent).isdisjoint(paid)
    assert sink_state(sink_uri) == expected_state(table, done.source)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ({"id": [1, 2], "body": ["ok", None]}, InvalidRowsError, "null or blank"),
        ({"id": [1, 2], "body": ["ok", "   "]}, InvalidRowsError, "null or blank"),
        ({"id": [1, 1], "body": ["a", "b"]}, InvalidRowsError, "not unique"),
        ({"id": [1, None], "body": ["a", "b"]}, InvalidRowsError, "null key"),
    ],
)
def test_bad_rows_fail_clearly_and_write_nothing(tmp_path: Path, sink_uri: str, data, error, match) -> None:  # type: ignore[no-untyped-def]
    table = write(tmp_path / "t", data)
    with pytest.raises(error, match=match) as info:
        run_embed(table, sink_uri, CountingProvider())
    assert info.value.hint
    assert status(sink_uri).points == 0
    assert Ledger().recent_runs()[0]["status"] == "failed"


def test_invalid_rows_can_be_skipped(tmp_path: Path, sink_uri: str) -> None:
    table = write(tmp_path / "t", {"id": [1, 2, 3], "body": ["ok", None, ""]})
    run = run_embed(table, sink_uri, CountingProvider(), on_invalid="skip")
    assert (run.n_rows_processed, run.n_skipped, run.n_written) == (3, 2, 1)


def test_missing_column_names_the_column(table: str, sink_uri: str) -> None:
    with pytest.raises(SourceError, match="text"):
        embed(table, text_col="text", key_col="id", model=MODEL, sink=sink_uri, shadow_mode=True)


def test_unknown_sink_scheme_and_unknown_model(table: str) -> None:
    with pytest.raises(ConfigError):
        embed(table, text_col="body", key_col="id", model=MODEL, sink="mongo://x/y", shadow_mode=True)
    with pytest.raises(UnknownModelError, match="dim"):
        embed(
            table, text_col="body", key_col="id", model="acme/new", sink="qdrant+memory://c", shadow_mode=True
        )


def test_collection_of_another_dimension_is_refused(table: str, sink_uri: str) -> None:
    run_embed(table, sink_uri, CountingProvider(dim=64))
    with pytest.raises(DimensionMismatchError) as info:
        run_embed(table, sink_uri, CountingProvider(dim=32))
    assert "migrate" in (info.value.hint or "")


def test_in_memory_frames_need_a_source_name(sink_uri: str) -> None:
    frame = pa.table(tickets(3))
    with pytest.raises(ConfigError, match="source"):
        embed(frame, text_col="body", key_col="id", model=MODEL, sink=sink_uri, shadow_mode=True)
    run = embed(
        frame,
        source="crm.tickets",
        text_col="body",
        key_col="id",
        model=MODEL,
        sink=sink_uri,
        shadow_mode=True,
    )
    assert run.n_written == 3 and run.source == "crm.tickets"


def test_a_text_repeated_in_later_batches_of_one_run_is_paid_once(tmp_path: Path, sink_uri: str) -> None:
    # Batches of 4 rows; every text reappears 1, 2 and 5 batches later — while the
    # batch that first embedded it may still be on its way to the sink.
    texts = [f"shared text {i % 4}" for i in range(24)]
    table = write(tmp_path / "t", {"id": list(range(24)), "body": texts})
    provider = CountingProvider()
    run = run_embed(table, sink_uri, provider, batch_size=4)
    assert sorted(provider.texts_sent) == sorted(set(texts))
    assert (run.n_embedded, run.n_reused, run.n_written) == (4, 20, 24)
    assert sink_state(sink_uri) == expected_state(table, run.source)
    assert status(sink_uri).in_agreement


def test_sink_failing_half_way_leaves_ledger_and_sink_agreeing_and_the_rerun_completes(
    table: str, sink_uri: str
) -> None:
    from .cdc_helpers import FlakySink

    provider = CountingProvider()
    flaky = FlakySink(open_sink(sink_uri), fail_after=2)  # accepts two 10-row batches, then drops
    with pytest.raises(SinkUnavailableError):
        run_embed(table, flaky, provider, batch_size=10)
    flaky.close()
    with Ledger() as led:
        failed = led.recent_runs(limit=1)[0]
    assert failed["status"] == "failed" and failed["n_written"] == 20
    after_failure = status(sink_uri)
    assert after_failure.points == after_failure.ledger_points == 20  # every accepted batch is recorded

    rerun = run_embed(table, sink_uri, provider, batch_size=10)
    assert (rerun.n_rows_deduped, rerun.n_written) == (20, 30)
    assert sink_state(sink_uri) == expected_state(table, rerun.source)
    # texts embedded but never accepted (the failed batch, one queued, one being handed over) are paid again
    assert 50 <= len(provider.texts_sent) <= 50 + 3 * 10

"""submit_embed → complete_embed end to end: the real openai client, Delta, embedded Qdrant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from airflow_provider_drift.engine.batch_embed import (
    BatchEmbedJob,
    complete_embed,
    plan_batch_embed,
    submit_embed,
)
from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import ConfigError, ProviderError, SinkUnavailableError
from airflow_provider_drift.engine.identity import point_id
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.providers.openai_batch import OpenAIBatchEmbedder
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from airflow_provider_drift.engine.sinks import open_sink
from tests.engine.cdc_helpers import FlakySink
from tests.fixtures.openai_server import Fault, OpenAIServer

MODEL = "openai/text-embedding-3-small"
DIM = 32
PRICE = 0.02  # USD per million tokens, synchronous


def options(server: OpenAIServer, **kw: Any) -> dict[str, Any]:
    return {"api_key": "test-key", "base_url": server.url, "backoff_base_s": 0.01, "price": PRICE} | kw


def table(path: Path, ids: list[int], bodies: list[str], mode: str = "append") -> str:
    write_deltalake(str(path), pa.table({"id": ids, "body": bodies}), mode=mode)
    return str(path)


def wait_done(server: OpenAIServer, job: BatchEmbedJob) -> None:
    """Stand-in for the trigger: poll every batch until it will not change any more."""
    embedder = OpenAIBatchEmbedder(MODEL, dim=DIM, **options(server))
    try:
        for batch_id in job.batch_ids:
            for _ in range(10):
                if embedder.poll(batch_id).done:
                    break
    finally:
        embedder.close()


def batch_billed(server: OpenAIServer) -> list[str]:
    return [t for r in server.requests if r.method == "BATCH" and r.status == 200 for t in r.inputs]


def batch_tokens(server: OpenAIServer) -> int:
    return sum(r.tokens for r in server.requests if r.method == "BATCH" and r.status == 200)


def submit(server: OpenAIServer, src: Any, sink: str, **kw: Any) -> BatchEmbedJob:
    args: dict[str, Any] = {"text_col": "body", "key_col": "id", "model": MODEL, "sink": sink, "dim": DIM}
    return submit_embed(src, provider_options=options(server), **(args | kw))


def run_job(server: OpenAIServer, src: Any, sink: str, **kw: Any) -> Any:
    job = submit(server, src, sink, **kw)
    wait_done(server, job)
    return job, complete_embed(job, ledger=kw.get("ledger"), provider_options=options(server))


def points(sink: str) -> dict[str, dict[str, Any]]:
    s = open_sink(sink)
    try:
        return {p.id: p.payload for page in s.scroll() for p in page}
    finally:
        s.close()


@pytest.fixture
def sink(tmp_path: Path) -> str:
    return f"qdrant+local://{tmp_path}/qdrant/tickets"


def test_submit_then_complete_writes_every_row_at_half_price(
    openai_server: OpenAIServer, tmp_path: Path, sink: str, ledger_path: Path
) -> None:
    bodies = [f"ticket {i % 20}: cannot log in" for i in range(30)]  # 20 distinct texts for 30 rows
    src = table(tmp_path / "t", list(range(30)), bodies)

    job = submit(openai_server, src, sink)
    assert (job.n_rows, job.n_rows_todo, job.n_texts_submitted, len(job.batch_ids)) == (30, 30, 20, 1)
    assert job.estimated_tokens > 0 and job.estimated_cost_usd is not None
    assert job.to_dict() == BatchEmbedJob.from_dict(job.to_dict()).to_dict()  # JSON primitives round-trip
    assert openai_server.embedding_requests() == []  # nothing synchronous, nothing written yet
    assert not Path(sink.removeprefix("qdrant+local://")).exists() or points(sink) == {}
    with Ledger() as led:
        assert led.get_run(job.run_id)["status"] == "running"

    wait_done(openai_server, job)
    run = complete_embed(job, provider_options=options(openai_server))
    assert (run.status, run.n_rows_processed, run.n_written, run.n_embedded) == ("success", 30, 30, 20)
    assert Counter(batch_billed(openai_server)) == Counter(set(bodies))  # identical texts paid once
    assert run.tokens == batch_tokens(openai_server) > 0
    assert run.cost_usd == pytest.approx(run.tokens * PRICE * 0.5 / 1e6)
    assert openai_server.embedding_requests() == []

    stored = points(sink)
    assert set(stored) == {point_id(run.source, str(i)) for i in range(30)}
    s = open_sink(sink)
    got = s.fetch([point_id(run.source, "7")], with_vectors=True)[point_id(run.source, "7")]
    s.close()
    expected = shadow_vectors(MODEL, [bodies[7]], DIM)[0]
    np.testing.assert_allclose(got.vector, expected / np.linalg.norm(expected), atol=1e-5)
    with Ledger() as led:
        recorded = led.get_run(job.run_id)
    assert (recorded["status"], recorded["n_written"], recorded["tokens"]) == ("success", 30, run.tokens)
    assert recorded["cost_usd"] == pytest.approx(run.cost_usd)
    assert not Path(str(job.manifest)).exists() and openai_server.files == {}  # cleaned up

    again = embed(src, text_col="body", key_col="id", model=MODEL, sink=sink, dim=DIM,
                  provider_options=options(openai_server))  # fmt: skip
    assert (again.n_embedded, again.n_written, again.n_rows_deduped) == (0, 0, 30)


def test_texts_the_sink_holds_are_reused_and_nothing_new_means_no_batch(
    openai_server: OpenAIServer, tmp_path: Path, sink: str
) -> None:
    src = table(tmp_path / "t", list(range(10)), [f"old text {i}" for i in range(10)])
    run_job(openai_server, src, sink)
    billed_before = len(batch_billed(openai_server))
    # new keys: three carry texts the sink already holds, two are new
    table(tmp_path / "t", [10, 11, 12, 13, 14], ["old text 1", "old text 2", "old text 3", "new a", "new b"])
    job, run = run_job(openai_server, src, sink)
    assert (job.n_rows_todo, job.n_texts_reusable, job.n_texts_submitted) == (5, 3, 2)
    assert batch_billed(openai_server)[billed_before:] == ["new a", "new b"]
    assert (run.n_written, run.n_embedded, run.n_reused, run.n_rows_deduped) == (5, 2, 3, 10)

    # only reusable texts under a new key: no batch at all, the row is still written
    table(tmp_path / "t", [20], ["new a"])
    job = submit(openai_server, src, sink)
    assert job.batch_ids == [] and job.n_texts_submitted == 0 and job.estimated_tokens == 0
    run = complete_embed(job, provider_options=options(openai_server))
    assert (run.status, run.n_written, run.n_reused, run.n_embedded) == ("success", 1, 1, 0)
    assert run.cost_usd == 0.0
    assert len(points(sink)) == 16


def test_failed_lines_record_what_came_back_and_the_rerun_pays_only_the_rest(
    openai_server: OpenAIServer, tmp_path: Path, sink: str, ledger_path: Path
) -> None:
    bodies = [f"ticket {i}" for i in range(9)]
    bodies[4] = "poison ticket"
    src = table(tmp_path / "t", list(range(9)), bodies)
    openai_server.poison("poison ticket", Fault.http(500))
    small = options(openai_server, max_inputs_per_request=3)  # 3 request lines; line 2 fails

    job = submit_embed(src, text_col="body", key_col="id", model=MODEL, sink=sink, dim=DIM,
                       provider_options=small)  # fmt: skip
    wait_done(openai_server, job)
    with pytest.raises(ProviderError, match=r"3 text\(s\) .* no vector .*3 row\(s\) were not written") as err:
        complete_embed(job, provider_options=small)
    assert err.value.fields == {"n_missing": 3, "n_rows_missing": 3}
    assert len(points(sink)) == 6  # the rows with results are written …
    with Ledger() as led:
        failed = led.get_run(job.run_id)
    assert (failed["status"], failed["n_written"]) == ("failed", 6)  # … and recorded
    assert "re-run" in failed["error"]
    assert failed["cost_usd"] == pytest.approx(batch_tokens(openai_server) * PRICE * 0.5 / 1e6)

    openai_server.poison("poison ticket", None)
    job2, run2 = run_job(openai_server, src, sink)
    assert (job2.n_rows_todo, job2.n_texts_submitted) == (3, 3)
    assert (run2.status, run2.n_written) == ("success", 3)
    assert Counter(batch_billed(openai_server)) == Counter(bodies)  # every text paid exactly once


def test_more_texts_than_one_batch_holds_are_split_and_in_memory_data_is_passed_again(
    openai_server: OpenAIServer, sink: str
) -> None:
    data = pa.table({"id": list(range(10)), "body": [f"row {i}" for i in range(10)]})
    embedder = OpenAIBatchEmbedder(MODEL, dim=DIM, **options(openai_server))
    embedder.max_texts_per_batch = 4
    job = submit_embed(data, source="mem", text_col="body", key_col="id", model=MODEL, sink=sink,
                       embedder=embedder)  # fmt: skip
    assert (len(job.batch_ids), job.n_texts_submitted, job.location) == (3, 10, None)
    wait_done(openai_server, job)
    with pytest.raises(ConfigError, match="in-memory data"):
        complete_embed(job, provider_options=options(openai_server))
    run = complete_embed(job, data, embedder=embedder)
    embedder.close()
    assert (run.status, run.n_written, run.n_embedded) == ("success", 10, 10)
    assert Counter(batch_billed(openai_server)) == Counter(data.column("body").to_pylist())


def test_rows_changed_after_submission_are_embedded_synchronously(
    openai_server: OpenAIServer, sink: str
) -> None:
    data = pa.table({"id": [1, 2], "body": ["first", "second"]})
    job = submit(openai_server, data, sink, source="mem")
    wait_done(openai_server, job)
    changed = pa.table({"id": [1, 2], "body": ["first", "second, edited"]})
    run = complete_embed(job, changed, provider_options=options(openai_server))
    assert (run.status, run.n_written, run.n_embedded) == ("success", 2, 2)
    assert openai_server.billed_texts() == ["second, edited"]  # at the full price, synchronously
    assert run.cost_usd is not None and run.cost_usd > run.tokens * PRICE * 0.5 / 1e6


def test_plan_is_priced_at_the_discount_and_other_providers_are_refused(
    openai_server: OpenAIServer, tmp_path: Path, sink: str
) -> None:
    src = table(tmp_path / "t", [1, 2], ["a text", "another text"])
    plan = plan_batch_embed(src, text_col="body", key_col="id", model=MODEL, sink=sink, dim=DIM,
                            provider_options=options(openai_server))  # fmt: skip
    assert plan.status == "planned" and plan.n_embedded == 2
    assert plan.cost_usd == pytest.approx(plan.tokens * PRICE * 0.5 / 1e6)
    with pytest.raises(ConfigError, match="openai/<model>"):
        submit_embed(src, text_col="body", key_col="id", model="local/all-MiniLM-L6-v2", sink=sink)
    assert openai_server.requests == []


def test_a_failed_batch_writes_nothing_and_says_to_re_run(
    openai_server: OpenAIServer, tmp_path: Path, sink: str, ledger_path: Path
) -> None:
    src = table(tmp_path / "t", [1, 2], ["a text", "another text"])
    openai_server.batch_outcome = "failed"
    job = submit(openai_server, src, sink)
    wait_done(openai_server, job)
    with pytest.raises(ProviderError, match=r"2 text\(s\) .*injected.*2 row\(s\) were not written"):
        complete_embed(job, provider_options=options(openai_server))
    with Ledger() as led:
        assert (led.get_run(job.run_id)["status"], led.get_run(job.run_id)["cost_usd"]) == ("failed", 0.0)
    openai_server.batch_outcome = "completed"
    _, run = run_job(openai_server, src, sink)
    assert (run.status, run.n_written) == ("success", 2)


def test_a_retried_submitter_resumes_its_job_and_pays_once(
    openai_server: OpenAIServer, tmp_path: Path, sink: str, ledger_path: Path
) -> None:
    src = table(tmp_path / "t", [1, 2, 3], ["first text", "second text", "third text"])
    key = "dag/embed/manual__1/-1"
    job = submit(openai_server, src, sink, resume_key=key)
    wait_done(openai_server, job)
    uploads = sum(r.method == "POST" and r.path.endswith("/files") for r in openai_server.requests)
    assert uploads == 1

    again = submit(openai_server, src, sink, resume_key=key)  # an Airflow retry of the same task instance
    assert again.to_dict() == job.to_dict()
    assert sum(r.method == "POST" and r.path.endswith("/files") for r in openai_server.requests) == uploads

    down = FlakySink(open_sink(sink), fail_after=0)  # the first completion cannot write
    with pytest.raises(SinkUnavailableError):
        complete_embed(job, sink=down, provider_options=options(openai_server))
    down.inner.close()
    resumed = submit(openai_server, src, sink, resume_key=key)  # the retry finishes the same job
    assert resumed.run_id == job.run_id
    run = complete_embed(resumed, provider_options=options(openai_server))
    assert (run.status, run.n_written) == ("success", 3)
    assert Counter(batch_billed(openai_server)) == Counter(["first text", "second text", "third text"])

    fresh = submit(openai_server, src, sink, resume_key=key)  # completed: nothing left to resume
    assert fresh.run_id != job.run_id and fresh.batch_ids == []

"""The Batch API path with the real ``openai`` client against the local server's /v1/files and /v1/batches."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import (
    ConfigError,
    InvalidRowsError,
    ProviderError,
    ProviderUnavailableError,
)
from airflow_provider_drift.engine.providers.openai_batch import BatchResult, OpenAIBatchEmbedder
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from tests.fixtures.openai_server import Fault, OpenAIServer

MODEL = "openai/text-embedding-3-small"


def make(server: OpenAIServer, **kw: Any) -> OpenAIBatchEmbedder:
    opts: dict[str, Any] = {"api_key": "test-key", "base_url": server.url, "dim": 32, "backoff_base_s": 0.01}
    return OpenAIBatchEmbedder(MODEL, **(opts | kw))


def texts(n: int) -> list[str]:
    return [f"batch text {i} about vectors" for i in range(n)]


def run_to_end(embedder: OpenAIBatchEmbedder, batch_id: str) -> BatchResult:
    seen = []
    for _ in range(10):
        status = embedder.poll(batch_id)
        seen.append(status.status)
        if status.done:
            break
    assert seen[-1] in ("completed", "expired", "cancelled", "failed")
    return embedder.fetch(batch_id)


def batch_billed(server: OpenAIServer) -> list[str]:
    return [t for r in server.requests if r.method == "BATCH" and r.status == 200 for t in r.inputs]


def test_submit_poll_fetch_in_order_at_half_price(openai_server: OpenAIServer) -> None:
    data = texts(25)
    embedder = make(openai_server, max_inputs_per_request=10, price_table={MODEL: 0.02})
    batch_id = embedder.submit(data, metadata={"dag": "nightly"})
    assert openai_server.embedding_requests() == []  # nothing is embedded synchronously

    with pytest.raises(ProviderUnavailableError, match="still"):
        embedder.fetch(batch_id)  # not done yet: transient, try later
    assert embedder.poll(batch_id).status in ("in_progress", "finalizing", "completed")

    result = run_to_end(embedder, batch_id)
    assert result.complete and result.total == 25 and result.positions == list(range(25))
    np.testing.assert_allclose(result.embeddings.vectors, shadow_vectors(MODEL, data, 32), atol=1e-5)
    assert result.embeddings.tokens > 0
    assert result.embeddings.cost_usd == pytest.approx(result.embeddings.tokens * 0.01 / 1e6)
    assert Counter(batch_billed(openai_server)) == Counter(data)

    # the input file holds API-sized requests with the same checks as the synchronous path
    batch = openai_server.batches[batch_id]
    lines = openai_server.files[batch["input_file_id"]]["content"].decode().splitlines()
    bodies = [json.loads(line) for line in lines]
    assert [b["custom_id"] for b in bodies] == ["0:10", "10:10", "20:5"]
    assert all(b["body"]["dimensions"] == 32 and b["url"] == "/v1/embeddings" for b in bodies)
    assert batch["metadata"]["dag"] == "nightly"

    embedder.delete_files(batch_id)
    assert not openai_server.files


def test_invalid_texts_are_refused_before_upload(openai_server: OpenAIServer) -> None:
    embedder = make(openai_server)
    with pytest.raises(InvalidRowsError, match="empty"):
        embedder.submit(["fine", ""])
    embedder.max_texts_per_batch = 3
    with pytest.raises(ConfigError, match="limit of 3"):
        embedder.submit(texts(4))
    assert openai_server.files == {} and openai_server.batches == {}


def test_failed_lines_come_back_as_positions_to_resubmit(openai_server: OpenAIServer) -> None:
    data = texts(9)
    data[4] = "poison text"
    openai_server.poison("poison text", Fault.http(500))
    embedder = make(openai_server, max_inputs_per_request=3)
    result = run_to_end(embedder, embedder.submit(data))
    assert not result.complete
    assert sorted(result.failed) == [3, 4, 5] and "HTTP 500" in result.failed[4]
    assert result.positions == [0, 1, 2, 6, 7, 8]
    expected = shadow_vectors(MODEL, [data[i] for i in result.positions], 32)
    np.testing.assert_allclose(result.embeddings.vectors, expected, atol=1e-5)

    openai_server.poison("poison text", None)  # resubmit only what failed
    retry = run_to_end(embedder, embedder.submit([data[i] for i in sorted(result.failed)]))
    assert retry.complete
    assert Counter(batch_billed(openai_server)) == Counter(data)  # every text paid exactly once


def test_expired_batch_returns_the_part_that_ran(openai_server: OpenAIServer) -> None:
    openai_server.batch_outcome = "expired"
    embedder = make(openai_server, max_inputs_per_request=2)
    result = run_to_end(embedder, embedder.submit(texts(8)))
    assert result.positions == [0, 1, 2, 3]
    assert set(result.failed) == {4, 5, 6, 7} and "batch_expired" in result.failed[7]


def test_failed_batch_raises_with_the_reason(openai_server: OpenAIServer) -> None:
    openai_server.batch_outcome = "failed"
    embedder = make(openai_server)
    batch_id = embedder.submit(texts(3))
    for _ in range(5):
        status = embedder.poll(batch_id)
        if status.done:
            break
    assert status.status == "failed" and "injected" in status.errors[0]
    with pytest.raises(ProviderError, match="injected"):
        embedder.fetch(batch_id)


def test_cancelled_batch_has_no_vectors(openai_server: OpenAIServer) -> None:
    embedder = make(openai_server)
    batch_id = embedder.submit(texts(3))
    assert embedder.cancel(batch_id).status == "cancelling"
    result = run_to_end(embedder, batch_id)
    assert result.positions == [] and sorted(result.failed) == [0, 1, 2]
    assert result.embeddings.vectors.shape == (0, 32) and result.embeddings.cost_usd == 0.0


def test_transient_errors_on_batch_routes_are_retried(openai_server: OpenAIServer) -> None:
    embedder = make(openai_server)
    openai_server.add_batch_faults(Fault.http(503), Fault.drop(), route="POST /v1/files")
    openai_server.add_batch_faults(Fault.http(502), route="POST /v1/batches")
    batch_id = embedder.submit(texts(2))
    openai_server.add_batch_faults(Fault.http(429, retry_after_ms="10"), route="GET /v1/batches")
    openai_server.add_batch_faults(Fault.http(500), route="GET /v1/files")
    assert run_to_end(embedder, batch_id).complete
    faults = [r.fault for r in openai_server.requests if r.fault]
    assert sorted(faults) == ["drop", "status", "status", "status", "status"]  # all used, all survived
    assert len(openai_server.batches) == 1
    assert len(openai_server.files) >= 2  # input and output


def test_lost_answer_on_create_does_not_start_a_second_batch(openai_server: OpenAIServer) -> None:
    embedder = make(openai_server)
    # the upload goes through; the batch is created but its answer is lost on the way back
    openai_server.add_batch_faults(Fault.lost_answer(), route="POST /v1/batches")
    batch_id = embedder.submit(texts(2))
    creates = [r for r in openai_server.requests if r.method == "POST" and r.path == "/v1/batches"]
    assert [r.fault for r in creates] == ["lost_answer", None][: len(creates)]
    assert list(openai_server.batches) == [batch_id]  # found, not created twice
    assert run_to_end(embedder, batch_id).complete


def test_auth_error_is_terminal(openai_server: OpenAIServer) -> None:
    with pytest.raises(ProviderError, match="401"):
        make(openai_server, api_key="wrong").submit(texts(2))

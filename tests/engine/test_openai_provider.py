"""The OpenAI provider with the real ``openai`` client against the local OpenAI-compatible server."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import (
    ConfigError,
    InvalidRowsError,
    ProviderError,
    ProviderUnavailableError,
    TerminalError,
    TransientError,
    UnknownModelError,
)
from airflow_provider_drift.engine.providers import get_provider
from airflow_provider_drift.engine.providers.openai_provider import OpenAIProvider
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from tests.fixtures.openai_server import Fault, OpenAIServer

MODEL = "openai/text-embedding-3-small"


def make(server: OpenAIServer, model: str = MODEL, **kw: Any) -> OpenAIProvider:
    opts: dict[str, Any] = {"api_key": "test-key", "base_url": server.url, "dim": 64}
    opts |= {"timeout": 10.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "seed": 7}
    return OpenAIProvider(model, **(opts | kw))


def texts(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} number {i} about drift" for i in range(n)]


# -- happy path: order, batching, cost ----------------------------------------------------------


def test_vectors_in_input_order_with_cost_from_usage(openai_server: OpenAIServer) -> None:
    data = texts(5000)
    provider = make(openai_server, price_table={MODEL: 0.02})
    got = provider.embed(data)
    provider.close()

    assert got.vectors.shape == (5000, 64) and got.vectors.dtype == np.float32
    np.testing.assert_allclose(got.vectors, shadow_vectors(MODEL, data, 64), atol=1e-5)
    served = openai_server.embedding_requests(status=200)
    assert sorted(len(r.inputs) for r in served) == [904, 2048, 2048]
    assert all(r.body["dimensions"] == 64 for r in served)  # text-embedding-3 shortens on the server
    assert got.tokens == sum(r.tokens for r in served)
    assert got.cost_usd == pytest.approx(got.tokens * 0.02 / 1e6)
    assert Counter(openai_server.billed_texts()) == Counter(data)  # each text sent once


def test_requests_respect_the_token_budget(openai_server: OpenAIServer) -> None:
    data = [f"{i} " + "word " * 50 for i in range(60)]
    provider = make(openai_server, max_tokens_per_request=1000)
    assert provider.embed(data).vectors.shape == (60, 64)
    served = openai_server.embedding_requests(status=200)
    assert len(served) > 1 and all(r.tokens <= 1000 for r in served)
    assert Counter(openai_server.billed_texts()) == Counter(data)


def test_byte_bounds_do_not_shrink_requests_when_exact_counts_fit(openai_server: OpenAIServer) -> None:
    data = [f"{i} " + "word " * 48 for i in range(10)]  # ~250 bytes but ~50 tokens each
    provider = make(openai_server, max_tokens_per_request=1000)
    provider.embed(data)
    assert [len(r.inputs) for r in openai_server.embedding_requests()] == [10]


def test_real_limits_300k_tokens_per_request(openai_server: OpenAIServer) -> None:
    data = [f"{i} " + "word " * 7990 for i in range(50)]  # ~8k tokens each, 400k in all
    provider = make(openai_server)
    assert (provider.max_inputs_per_request, provider.max_tokens_per_request) == (2048, 300_000)
    assert provider.estimate_tokens(data) == sum(provider.counter.count(t) for t in data)
    got = provider.embed(data)
    served = openai_server.embedding_requests()
    assert [r.status for r in served] == [200, 200]  # the server enforces the same limits and accepted
    assert all(r.tokens <= 300_000 for r in served)
    assert got.tokens == provider.estimate_tokens(data)  # offline count == the server's usage


def test_float_encoding_and_single_text(openai_server: OpenAIServer) -> None:
    provider = make(openai_server, encoding_format="float")
    got = provider.embed(["just one"])
    np.testing.assert_allclose(got.vectors, shadow_vectors(MODEL, ["just one"], 64), atol=1e-6)
    assert provider.embed([]).vectors.shape == (0, 64)


def test_max_concurrency_requests_in_flight(openai_server: OpenAIServer) -> None:
    openai_server.latency_s = 0.15
    provider = make(openai_server, max_concurrency=3, max_inputs_per_request=10)
    got = provider.embed(texts(90))  # 9 requests
    provider.close()
    assert got.vectors.shape == (90, 64)
    assert openai_server.max_in_flight == 3


# -- inputs the API would refuse ----------------------------------------------------------------


def test_empty_text_fails_before_anything_is_sent(openai_server: OpenAIServer) -> None:
    provider = make(openai_server)
    with pytest.raises(InvalidRowsError, match="empty") as err:
        provider.embed(["fine", "", "also fine"])
    assert err.value.fields["positions"] == [1]
    assert isinstance(err.value, TerminalError)
    assert openai_server.embedding_requests() == []


def test_over_long_text_errors_by_default(openai_server: OpenAIServer) -> None:
    provider = make(openai_server)
    long_text = "word " * 9000
    assert provider.find_invalid(["ok", long_text]).keys() == {1}
    with pytest.raises(InvalidRowsError, match="max_input_tokens=8192"):
        provider.embed(["ok", long_text])
    assert openai_server.embedding_requests() == []


def test_over_long_text_truncates_when_asked(openai_server: OpenAIServer) -> None:
    provider = make(openai_server, on_too_long="truncate")
    long_text = "drift " * 9000
    got = provider.embed(["short", long_text])
    assert got.vectors.shape == (2, 64)
    assert provider.stats.truncated == 1
    [req] = openai_server.embedding_requests()
    assert req.status == 200  # the server, counting like OpenAI, accepted the cut text
    sent = req.inputs[1]
    assert long_text.startswith(sent) and provider.counter.count(sent) <= 8192
    assert provider.counter.count(sent) >= 8190  # cut at the limit, not far below it


def test_byte_bound_counter_never_lets_a_long_text_through(openai_server: OpenAIServer) -> None:
    provider = make(openai_server, tokenizer="bytes", on_too_long="truncate")
    text = "é" * 5000  # 10,000 UTF-8 bytes
    provider.embed([text])
    [req] = openai_server.embedding_requests(status=200)
    assert len(req.inputs[0].encode()) <= 8192 and text.startswith(req.inputs[0])


# -- retries ------------------------------------------------------------------------------------


def test_transient_failures_are_retried_until_success(openai_server: OpenAIServer) -> None:
    openai_server.add_faults(
        Fault.http(429), Fault.http(500), Fault.http(503), Fault.drop(), Fault.slow(1.0), Fault.http(502)
    )
    provider = make(openai_server, timeout=0.3)
    got = provider.embed(texts(3))
    np.testing.assert_allclose(got.vectors, shadow_vectors(MODEL, texts(3), 64), atol=1e-6)
    openai_server.wait_idle()
    statuses = [r.status for r in openai_server.embedding_requests()]
    # the slow one was answered 200 after the client had given up on it: it is billed and retried
    assert statuses == [429, 500, 503, 0, 200, 502, 200]
    assert provider.stats.retries == 6


def test_retry_after_is_honoured(openai_server: OpenAIServer) -> None:
    openai_server.add_faults(Fault.http(429, retry_after="1"), Fault.http(503, retry_after_ms="400"))
    make(openai_server).embed(texts(2))
    first, second, third = (r.t for r in openai_server.embedding_requests())
    assert second - first >= 1.0
    assert third - second >= 0.4


def test_retries_stop_after_max_retries(openai_server: OpenAIServer) -> None:
    openai_server.always(Fault.http(503))
    provider = make(openai_server, max_retries=3)
    with pytest.raises(ProviderUnavailableError, match="after 4 attempts") as err:
        provider.embed(texts(2))
    assert isinstance(err.value, TransientError) and err.value.hint
    assert len(openai_server.embedding_requests()) == 4


def test_retry_after_beyond_the_wait_budget_gives_up_at_once(openai_server: OpenAIServer) -> None:
    openai_server.always(Fault.http(429, retry_after="600"))
    provider = make(openai_server, max_total_wait_s=30)
    with pytest.raises(ProviderUnavailableError, match="wait budget"):
        provider.embed(texts(2))
    assert len(openai_server.embedding_requests()) == 1


def test_wait_budget_bounds_backoff(openai_server: OpenAIServer) -> None:
    openai_server.always(Fault.http(500))
    provider = make(
        openai_server, max_retries=1000, max_total_wait_s=0.3, backoff_base_s=0.05, backoff_cap_s=0.1
    )
    with pytest.raises(ProviderUnavailableError):
        provider.embed(texts(1))
    attempts = len(openai_server.embedding_requests())
    assert 2 < attempts < 1000  # it retried, and the budget, not max_retries, stopped it


# -- terminal errors ----------------------------------------------------------------------------


def test_bad_api_key_is_terminal_with_a_hint(openai_server: OpenAIServer) -> None:
    provider = make(openai_server, api_key="wrong")
    with pytest.raises(ProviderError, match="401") as err:
        provider.embed(texts(2))
    assert "OPENAI_API_KEY" in (err.value.hint or "")
    assert len(openai_server.requests) == 1


def test_bad_request_is_not_retried(openai_server: OpenAIServer) -> None:
    openai_server.add_faults(Fault.http(400))
    with pytest.raises(ProviderError, match="HTTP 400"):
        make(openai_server).embed(texts(2))
    assert len(openai_server.embedding_requests()) == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.malformed(), "not JSON"),
        (Fault.wrong_count(), "returned 2 vectors for 3 inputs"),
        (Fault.wrong_dim(), "returned 2-d vectors, expected 64"),
    ],
)
@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_broken_answers_are_clear_errors(
    openai_server: OpenAIServer, fault: Fault, message: str, encoding: str
) -> None:
    openai_server.add_faults(fault)
    with pytest.raises(ProviderError, match=message):
        make(openai_server, encoding_format=encoding).embed(texts(3))
    assert len(openai_server.embedding_requests()) == 1  # paid once, not retried blindly


# -- a failed call keeps what it paid for; a re-run pays only for the rest ------------------------


def _run(provider: OpenAIProvider, data: list[str], store: dict[str, np.ndarray]) -> None:
    """The orchestrator's loop: embed chunk by chunk, skip what is stored, keep partial results."""
    todo = [t for t in data if t not in store]
    for start in range(0, len(todo), provider.preferred_chunk):
        chunk = todo[start : start + provider.preferred_chunk]
        try:
            got = provider.embed(chunk)
        except ProviderUnavailableError as exc:
            partial = getattr(exc, "partial", None)
            if partial is not None:
                for pos, vec in zip(partial.positions, partial.embeddings.vectors, strict=True):
                    store[chunk[pos]] = vec
            raise
        store.update(zip(chunk, got.vectors, strict=True))


def test_no_text_is_paid_twice_across_a_failed_run_and_its_rerun(openai_server: OpenAIServer) -> None:
    data = texts(400)
    data[250] = "poison pill"
    openai_server.poison("poison pill", Fault.http(503))
    provider = make(openai_server, max_concurrency=2, max_inputs_per_request=50, max_retries=2)
    assert provider.preferred_chunk == 200  # two waves of max_concurrency full requests
    store: dict[str, np.ndarray] = {}
    with pytest.raises(ProviderUnavailableError) as err:
        _run(provider, data, store)
    partial = err.value.partial  # type: ignore[attr-defined]
    # the failed chunk is texts[200:400]; its request for [200:250] succeeded before [250:300] gave up
    assert set(range(50)) <= set(partial.positions) and not set(range(50, 100)) & set(partial.positions)
    assert len(partial.positions) == len(partial.embeddings.vectors) and partial.embeddings.tokens > 0
    assert 250 <= len(store) < 400

    openai_server.poison("poison pill", None)  # the provider recovers; re-run
    _run(provider, data, store)
    assert set(store) == set(data)
    billed = Counter(openai_server.billed_texts())
    assert set(billed) == set(data) and max(billed.values()) == 1
    np.testing.assert_allclose(np.stack([store[t] for t in data]), shadow_vectors(MODEL, data, 64), atol=1e-5)


# -- configuration ------------------------------------------------------------------------------


def test_compatible_server_model_needs_dim_and_gets_no_dimensions(openai_server: OpenAIServer) -> None:
    with pytest.raises(UnknownModelError, match="dimension"):
        make(openai_server, "openai/BAAI/bge-small-en-v1.5", dim=None)
    provider = make(openai_server, "openai/BAAI/bge-small-en-v1.5", dim=64)
    got = provider.embed(texts(2))
    assert got.cost_usd is None  # never priced by guess
    [req] = openai_server.embedding_requests()
    assert req.body["model"] == "BAAI/bge-small-en-v1.5" and "dimensions" not in req.body


def test_unknown_price_is_unknown_cost_and_price_override(openai_server: OpenAIServer) -> None:
    provider = make(openai_server, "openai/my-embedder", price=0.5)
    got = provider.embed(texts(4))
    assert provider.price_per_million_tokens() == 0.5
    assert got.cost_usd == pytest.approx(got.tokens * 0.5 / 1e6)


def test_fixed_size_model_refuses_another_dim(openai_server: OpenAIServer) -> None:
    with pytest.raises(ConfigError, match="1536"):
        make(openai_server, "openai/text-embedding-ada-002", dim=256)


def test_key_and_base_url_from_the_environment(openai_server: OpenAIServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    provider = get_provider(MODEL, dim=32, options={"backoff_base_s": 0.01})
    assert isinstance(provider, OpenAIProvider)
    assert provider.embed(["from env"]).vectors.shape == (1, 32)


def test_missing_key_for_openai_is_a_config_error(monkeypatch: Any) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="API key"):
        OpenAIProvider(MODEL)


def test_retries_are_logged(openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    openai_server.add_faults(Fault.http(429))
    with caplog.at_level(logging.INFO, logger="airflow_provider_drift"):
        make(openai_server).embed(texts(1))
    assert any("retry 1" in r.getMessage() and "429" in r.getMessage() for r in caplog.records)

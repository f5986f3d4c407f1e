"""Drift-Adapter on real model pairs (all-MiniLM-L6-v2, all-mpnet-base-v2, multilingual-e5-small) and on
synthetic pairs.

The real vectors ship with the tests: tests/data/migration-pairs (2,000 sentences, see its README).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_drift.engine.adapter import (
    DEFAULT_THRESHOLD,
    FORMAT_VERSION,
    DriftAdapter,
    check_quality,
    fit_best,
)
from airflow_provider_drift.engine.errors import AdapterQualityError, ConfigError
from airflow_provider_drift.engine.retrieval import Evaluation, distinct_rows, overlap_at_k, top_k

PAIRS = Path(__file__).resolve().parents[1] / "data" / "migration-pairs"
MINILM, MPNET, E5 = "local/all-MiniLM-L6-v2", "local/all-mpnet-base-v2", "local/multilingual-e5-small"


def load(name: str) -> np.ndarray:
    x = np.load(PAIRS / f"{name}.f16.npy").astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm() -> np.ndarray:
    return load("minilm-l6")


@pytest.fixture(scope="module")
def mpnet() -> np.ndarray:
    return load("mpnet-base")


@pytest.fixture(scope="module")
def e5() -> np.ndarray:
    return load("e5-small-q4")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [json.loads(line)["text"] for line in (PAIRS / "texts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def e5_on_minilm(minilm: np.ndarray, e5: np.ndarray, texts: list[str]) -> DriftAdapter:
    """e5 queries on a MiniLM index: a real pair Procrustes handles badly (e5 is strongly anisotropic)."""
    return fit_best(e5, minilm, from_model=MINILM, to_model=E5, texts=texts, collection_size=len(texts))


def rotated_pair(n: int = 2000, d: int = 64, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Old vectors that are an exact rotation of the new ones plus a mean offset (anisotropic, like real)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32) + 2.0 * rng.standard_normal(d).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    return x, x @ rotation, rotation


# --- real pairs ------------------------------------------------------------------------------------


def test_chosen_adapter_beats_centred_procrustes_on_validation_arr(e5_on_minilm: DriftAdapter) -> None:
    val = e5_on_minilm.candidates
    assert set(val) == {"procrustes", "ridge", "lowrank", "reverse", "blend"}
    assert all(q.split == "validation" and q.n_index == q.n_queries == 400 for q in val.values())
    assert e5_on_minilm.kind == max(val, key=lambda kd: val[kd].arr) and e5_on_minilm.kind != "procrustes"
    assert val[e5_on_minilm.kind].arr > val["procrustes"].arr + 0.08
    assert val["reverse"].arr > val["procrustes"].arr + 0.08  # the score-matching map does it alone
    assert val["procrustes"].arr < val["procrustes"].raw_agreement  # a rotation cannot undo anisotropy
    test = e5_on_minilm.quality
    assert test is not None and test.arr > test.raw_agreement  # and it holds on the untouched test split


def test_gate_refuses_a_real_pair_below_threshold_at_full_index_scale(e5_on_minilm: DriftAdapter) -> None:
    q = e5_on_minilm.quality
    assert q is not None and q.split == "test"
    # 400 test queries (20%) searched the 800 rows the map never saw; the estimate is for all 2,000
    assert (q.n_queries, q.n_index, q.collection_size, q.k) == (400, 800, 2000, 10)
    assert q.slope_per_doubling is not None and q.slope_per_doubling <= 0.0
    assert q.estimate == pytest.approx(max(q.arr + q.slope_per_doubling * np.log2(2000 / 800), 0.0))
    assert q.arr_low is not None and q.arr_high is not None
    assert q.arr_low < q.estimate < q.arr_high and q.arr_high - q.arr_low < 0.08
    assert q.arr_high < DEFAULT_THRESHOLD and q.verdict(DEFAULT_THRESHOLD) == "fail"
    with pytest.raises(
        AdapterQualityError, match=r"at an index of 2,000 rows.*below the gate 0.50: fail"
    ) as err:
        check_quality(e5_on_minilm)
    assert err.value.fields["verdict"] == "fail" and err.value.fields["arr"] == q.estimate


def test_a_larger_collection_lowers_the_estimate_by_the_measured_trend(
    minilm: np.ndarray, e5: np.ndarray, texts: list[str], e5_on_minilm: DriftAdapter
) -> None:
    big = fit_best(e5, minilm, texts=texts, collection_size=1_000_000)
    q, small = big.quality, e5_on_minilm.quality
    assert q is not None and small is not None and q.slope_per_doubling is not None
    assert q.arr == small.arr and q.n_index == 800 and q.collection_size == 1_000_000
    assert q.slope_per_doubling <= 0.0
    expected = q.arr + q.slope_per_doubling * np.log2(1_000_000 / 800)
    assert q.estimate == pytest.approx(max(expected, 0.0)) and q.estimate <= small.estimate
    assert q.arr_low is not None and q.arr_low <= q.estimate <= q.arr + 1e-12


@pytest.mark.parametrize("direction", ["mpnet queries, MiniLM index", "MiniLM queries, mpnet index"])
def test_related_real_pair_passes_the_default_gate_in_both_directions(
    minilm: np.ndarray, mpnet: np.ndarray, texts: list[str], direction: str
) -> None:
    old, new = (minilm, mpnet) if direction.startswith("mpnet") else (mpnet, minilm)
    adapter = fit_best(new, old, texts=texts, collection_size=len(texts))
    q = check_quality(adapter)
    assert (adapter.d_new, adapter.d_old) == (new.shape[1], old.shape[1])
    assert adapter.candidates[adapter.kind].arr >= adapter.candidates["procrustes"].arr
    assert 0.6 < q.arr < 0.8 and q.arr > q.raw_agreement + 0.05
    assert q.verdict(DEFAULT_THRESHOLD) == "pass" and q.arr_low is not None and q.arr_low > DEFAULT_THRESHOLD


def test_duplicates_are_removed_before_the_split_and_never_cross_it(
    minilm: np.ndarray, mpnet: np.ndarray, texts: list[str]
) -> None:
    rng = np.random.default_rng(3)
    copies = rng.choice(1000, 300, replace=False)
    rows = np.concatenate([np.arange(1000), copies])  # 300 texts twice
    order = rng.permutation(len(rows))
    x, y, t = mpnet[rows][order], minilm[rows][order], [texts[i] for i in rows[order]]
    kept = distinct_rows(x, t)
    assert len(kept) == 1000 and sorted(t[i] for i in kept) == sorted(texts[:1000])
    np.testing.assert_array_equal(distinct_rows(x), kept)  # same answer from the vectors alone
    adapter = fit_best(x, y, texts=t)
    q = adapter.quality
    assert q is not None and (adapter.n_pairs, adapter.n_duplicates) == (1300, 300)
    assert (q.n_index, q.n_queries, q.collection_size) == (400, 200, 1000)  # each distinct text once
    assert adapter.describe()["n_duplicates"] == 300


def test_rows_paired_wrongly_fail_the_gate(minilm: np.ndarray, mpnet: np.ndarray) -> None:
    shuffled = mpnet[np.random.default_rng(7).permutation(len(mpnet))]
    adapter = fit_best(shuffled, minilm, from_model=MINILM, to_model=MPNET)
    assert adapter.quality is not None and adapter.quality.arr < 0.1
    with pytest.raises(AdapterQualityError, match="use strategy='dual-write'") as err:
        check_quality(adapter)
    assert err.value.fields["threshold"] == DEFAULT_THRESHOLD


def test_evaluation_searches_the_index_it_is_given_with_own_rows_excluded() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ev = Evaluation.make(x, x, np.arange(250, 300), np.arange(300), k=5, split="test", nested=True)
    assert len(ev.index) == 300 and [len(keep) for keep, _, _, _ in ev.nested] == [75, 150]
    q = ev.score_adapted(x[250:300], collection_size=300)
    assert (q.arr, q.n_index, q.n_queries, q.collection_size, q.estimate) == (1.0, 300, 50, 300, 1.0)
    assert all(250 + i not in row for i, row in enumerate(ev.truth_new))


# --- maps, prediction, metrics -----------------------------------------------------------------------


def test_centred_procrustes_recovers_an_exact_rotation_and_predicts_single_or_batch() -> None:
    x, y, _ = rotated_pair()
    adapter = DriftAdapter.fit(x, y, kind="procrustes")
    np.testing.assert_allclose(adapter.predict(x), y, atol=1e-4)
    one = adapter.predict(x[5])
    assert one.shape == (64,)
    np.testing.assert_allclose(one, adapter.predict(x[5:6])[0], atol=1e-6)
    assert fit_best(x, y).quality.arr > 0.999  # type: ignore[union-attr]  # float32 near-ties aside


@pytest.mark.parametrize(("d_new", "d_old"), [(48, 96), (96, 48)])
def test_procrustes_between_different_dimensions_is_semi_orthogonal(d_new: int, d_old: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, d_new)).astype(np.float32)
    y = np.concatenate([x, rng.standard_normal((500, 96)).astype(np.float32)], axis=1)[:, :d_old]
    w = DriftAdapter.fit(x, y, kind="procrustes").weight.astype(np.float64)
    small = min(d_new, d_old)
    gram = w @ w.T if d_new < d_old else w.T @ w
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-4)
    out = DriftAdapter.fit(x, y, kind="ridge", params={"alpha": 0.1}).predict(x[:3])
    assert out.shape == (3, d_old)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_top_k_and_overlap_match_a_brute_force_sort() -> None:
    rng = np.random.default_rng(2)
    index = rng.standard_normal((300, 16)).astype(np.float32)
    queries = index[:40]
    got = top_k(queries, index, 5, exclude=np.arange(40))
    scores = queries @ index.T
    scores[np.arange(40), np.arange(40)] = -np.inf
    expected = np.argsort(-scores, axis=1)[:, :5]
    assert [set(r) for r in got] == [set(r) for r in expected]
    assert overlap_at_k(got, expected) == 1.0
    assert overlap_at_k(got, np.roll(expected, 1, axis=0)) < 0.2


# --- save / load ---------------------------------------------------------------------------------------


def test_save_load_round_trip_keeps_predictions_models_and_metrics(tmp_path: Path) -> None:
    x, y, _ = rotated_pair(d=32)
    y = y @ np.eye(32, 48, dtype=np.float32)  # an old space of another dimension
    adapter = fit_best(x, y, from_model="shadow/old", to_model="shadow/new")
    path = adapter.save(tmp_path / "adapters" / "a.npz")
    loaded = DriftAdapter.load(path, from_model="shadow/old", to_model="shadow/new", d_new=32, d_old=48)
    np.testing.assert_array_equal(loaded.predict(x[:10]), adapter.predict(x[:10]))
    assert loaded.describe() == adapter.describe()
    assert loaded.quality == adapter.quality and loaded.candidates == adapter.candidates
    with np.load(path, allow_pickle=False) as npz:  # the documented format, readable without this package
        meta = json.loads(str(npz["meta"]))
        assert npz["weight"].shape == (32, 48) and npz["bias"].shape == (48,)
    assert meta["format"] == "drift-adapter" and meta["format_version"] == FORMAT_VERSION
    assert (meta["from_model"], meta["to_model"], meta["kind"]) == ("shadow/old", "shadow/new", adapter.kind)
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]  # no temp files left behind


def test_a_version_1_file_still_loads_and_predicts_the_same(tmp_path: Path) -> None:
    x, y, _ = rotated_pair(n=600, d=16)
    adapter = fit_best(x, y, kinds=("procrustes",), from_model="shadow/old", to_model="shadow/new")
    path = adapter.save(tmp_path / "v2.npz")
    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    v1_fields = ("arr", "overlap", "raw_agreement", "mean_cos", "k", "n_queries", "n_index")
    meta |= {"format_version": 1, "quality": {f: meta["quality"][f] for f in v1_fields}, "candidates": {}}
    del meta["n_duplicates"]
    np.savez(tmp_path / "v1.npz", **(arrays | {"meta": np.array(json.dumps(meta))}))
    old = DriftAdapter.load(tmp_path / "v1.npz", from_model="shadow/old")
    np.testing.assert_array_equal(old.predict(x[:5]), adapter.predict(x[:5]))
    assert old.quality is not None and old.quality.split == "held-out" and old.quality.arr_low is None
    assert old.quality.estimate == adapter.quality.arr and old.n_duplicates == 0  # type: ignore[union-attr]
    assert check_quality(old, threshold=0.9).arr == old.quality.arr


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"from_model": "openai/text-embedding-ada-002"}, "from_model='shadow/old'"),
        ({"to_model": "shadow/other"}, "to_model='shadow/new'"),
        ({"d_new": 1536}, "d_new=32"),
        ({"d_old": 3072}, "d_old=48"),
    ],
)
def test_loading_an_adapter_for_other_models_or_dimensions_is_refused(
    tmp_path: Path, expect: dict[str, object], message: str
) -> None:
    x, y, _ = rotated_pair(n=200, d=32)
    y = y @ np.eye(32, 48, dtype=np.float32)  # an old space of another dimension
    adapter = DriftAdapter.fit(x, y, from_model="shadow/old", to_model="shadow/new")
    path = adapter.save(tmp_path / "a.npz")
    with pytest.raises(ConfigError, match=message):
        DriftAdapter.load(path, **expect)  # type: ignore[arg-type]


def test_unreadable_or_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        DriftAdapter.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a readable adapter file"):
        DriftAdapter.load(tmp_path / "junk.npz")
    x, y, _ = rotated_pair(n=100, d=8)
    good = DriftAdapter.fit(x, y).save(tmp_path / "good.npz")
    with np.load(good) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    for name, change in [
        ("future.npz", {"format_version": FORMAT_VERSION + 1}),
        ("other.npz", {"format": "something-else"}),
        ("dims.npz", {"d_new": 9}),
    ]:
        np.savez(tmp_path / name, **(arrays | {"meta": np.array(json.dumps(meta | change))}))
        with pytest.raises(ConfigError, match=r"version|not a drift-adapter|mis-shaped"):
            DriftAdapter.load(tmp_path / name)


# --- bad input --------------------------------------------------------------------------------------------


def test_bad_samples_are_refused_with_clear_errors() -> None:
    x, y, _ = rotated_pair(n=600, d=16)
    with pytest.raises(ConfigError, match="mismatched sample sizes: 600 new-model vectors vs 599"):
        fit_best(x, y[:599])
    with pytest.raises(ConfigError, match=r"too few pairs.*need at least 500"):
        fit_best(x[:300], y[:300])
    with pytest.raises(ConfigError, match=r"too few pairs.*need at least 20"):
        DriftAdapter.fit(x[:5], y[:5])
    broken = y.copy()
    broken[17, 3] = np.nan
    with pytest.raises(ConfigError, match="row 17 is NaN"):
        fit_best(x, broken)
    with pytest.raises(ConfigError, match="all-zero"):
        DriftAdapter.fit(np.zeros_like(x), y)
    with pytest.raises(ConfigError, match="2-D"):
        DriftAdapter.fit(x[:, 0], y)
    with pytest.raises(ConfigError, match="unknown adapter kind"):
        DriftAdapter.fit(x, y, kind="mlp")  # type: ignore[arg-type]


def test_bad_queries_and_gate_settings_are_refused() -> None:
    x, y, _ = rotated_pair(n=600, d=16)
    adapter = fit_best(x, y)
    with pytest.raises(ConfigError, match="dimension 12, the adapter expects 16"):
        adapter.predict(np.ones(12))
    with pytest.raises(ConfigError, match="NaN"):
        adapter.predict(np.full(16, np.nan))
    with pytest.raises(ConfigError, match="threshold"):
        check_quality(adapter, threshold=1.5)
    with pytest.raises(AdapterQualityError, match="no held-out quality"):
        check_quality(DriftAdapter.fit(x, y))
    assert check_quality(adapter, threshold=0.99).arr > 0.999

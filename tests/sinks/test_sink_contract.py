"""The behaviour every sink promises, written once and run against each sink kind.

Vectors are unit length: Qdrant normalises cosine vectors on write, so unit
vectors are what round-trips identically through every store (and what
embedding models produce).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import DimensionMismatchError, SinkError
from airflow_provider_drift.engine.sinks.base import Hit, PointBatch, Sink

DIM = 8


def unit_vectors(n: int, dim: int = DIM, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_batch(n: int, *, dim: int = DIM, seed: int = 0, tag: str = "v1") -> PointBatch:
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"point-{i}")) for i in range(n)]
    payloads: list[dict[str, Any]] = [
        {
            "key": f"k{i}",
            "content_hash": f"{tag}-{i:04d}",
            "n": i,
            "score": i / 4,
            "ok": i % 2 == 0,
            "tags": [tag],
        }
        for i in range(n)
    ]
    return PointBatch(ids=ids, vectors=unit_vectors(n, dim, seed=seed), payloads=payloads)


def all_points(sink: Sink, **kw: Any) -> list[Any]:
    return [p for page in sink.scroll(**kw) for p in page]


def test_missing_collection_reads_as_empty(sink: Sink) -> None:
    assert sink.dimension() is None
    assert sink.count() == 0
    assert sink.fetch([str(uuid.uuid4())]) == {}
    assert all_points(sink) == []
    assert sink.search(unit_vectors(1)[0]) == []
    sink.delete([str(uuid.uuid4())])  # nothing to delete, no error


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_ensure_collection_creates_with_dimension_and_is_idempotent(sink: Sink, distance: Any) -> None:
    sink.ensure_collection(DIM, distance=distance)
    sink.ensure_collection(DIM, distance=distance)
    assert sink.dimension() == DIM
    assert sink.count() == 0


def test_dimension_mismatch_is_a_clear_error_and_writes_nothing(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    with pytest.raises(DimensionMismatchError) as err:
        sink.ensure_collection(DIM * 2)
    assert str(DIM) in str(err.value) and str(DIM * 2) in str(err.value)
    assert "migrate" in str(err.value) and "another" in str(err.value)
    with pytest.raises(DimensionMismatchError):
        sink.upsert(make_batch(3, dim=DIM * 2))
    assert sink.count() == 0
    assert sink.dimension() == DIM


def test_upsert_then_fetch_round_trips_payload_and_vector(sink: Sink) -> None:
    batch = make_batch(20)
    sink.ensure_collection(DIM)
    sink.upsert(batch)
    assert sink.count() == 20
    got = sink.fetch(batch.ids, with_vectors=True)
    assert set(got) == set(batch.ids)
    for i, pid in enumerate(batch.ids):
        assert got[pid].id == pid
        assert got[pid].payload == batch.payloads[i]
        vector = got[pid].vector
        assert vector is not None
        np.testing.assert_allclose(vector, batch.vectors[i], atol=1e-6)
    without = sink.fetch(batch.ids[:2])
    assert all(p.vector is None for p in without.values())
    assert without[batch.ids[0]].payload == batch.payloads[0]


def test_upsert_overwrites_by_id(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    old, new = make_batch(10, seed=1, tag="old"), make_batch(10, seed=2, tag="new")
    sink.upsert(old)
    sink.upsert(new)
    assert sink.count() == 10
    got = sink.fetch(new.ids, with_vectors=True)
    for i, pid in enumerate(new.ids):
        assert got[pid].payload == new.payloads[i]
        vector = got[pid].vector
        assert vector is not None
        np.testing.assert_allclose(vector, new.vectors[i], atol=1e-6)
    assert sink.search(new.vectors[3], limit=1)[0].id == new.ids[3]


def test_upsert_replaces_the_whole_payload_shared_fields_included(sink: Sink) -> None:
    """Fields common to a batch (source, model, run) may be written apart: none may go stale."""
    sink.ensure_collection(DIM)
    batch = make_batch(12)
    first = [{"key": p["key"], "source": "s1", "model": "m1", "run": "r1", "v": 0} for p in batch.payloads]
    sink.upsert(PointBatch(batch.ids, batch.vectors, first))
    second = [{"key": p["key"], "model": "m2", "v": 1 if i % 2 else True} for i, p in enumerate(first)]
    sink.upsert(PointBatch(batch.ids, batch.vectors, second))
    got = sink.fetch(batch.ids)
    assert [got[pid].payload for pid in batch.ids] == second
    assert [type(got[pid].payload["v"]) for pid in batch.ids] == [type(p["v"]) for p in second]


def test_reupserting_the_same_batch_changes_nothing(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    batch = make_batch(15)
    sink.upsert(batch)
    before = {p.id: p.payload for p in all_points(sink)}
    sink.upsert(batch)
    assert sink.count() == 15
    assert {p.id: p.payload for p in all_points(sink)} == before


def test_delete_removes_exactly_those_ids_and_ignores_absent_ones(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    batch = make_batch(10)
    sink.upsert(batch)
    gone = batch.ids[2:5]
    sink.delete([*gone, str(uuid.uuid4()), str(uuid.uuid4())])
    sink.delete([])
    assert sink.count() == 7
    assert sink.fetch(gone) == {}
    assert set(sink.fetch(batch.ids)) == set(batch.ids) - set(gone)


def test_scroll_returns_every_point_exactly_once(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    batch = make_batch(250)
    sink.upsert(batch)
    pages = list(sink.scroll(batch_size=64))
    assert all(0 < len(page) <= 64 for page in pages)
    ids = [p.id for page in pages for p in page]
    assert len(ids) == 250 and set(ids) == set(batch.ids)
    by_id = {p.id: p for page in pages for p in page}
    assert by_id[batch.ids[7]].payload == batch.payloads[7]
    with_vectors = all_points(sink, batch_size=100, with_vectors=True)
    assert all(p.vector is not None and p.vector.shape == (DIM,) for p in with_vectors)


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_search_returns_the_nearest_point_first(sink: Sink, distance: Any) -> None:
    sink.ensure_collection(DIM, distance=distance)
    batch = make_batch(100, seed=3)
    sink.upsert(batch)
    rng = np.random.default_rng(9)
    for target in (0, 42, 99):
        query = batch.vectors[target] + rng.normal(scale=0.01, size=DIM).astype(np.float32)
        hits = sink.search(query / np.linalg.norm(query), limit=5)
        assert len(hits) == 5 and all(isinstance(h, Hit) for h in hits)
        assert hits[0].id == batch.ids[target]
        assert hits[0].payload == batch.payloads[target]
        assert len({h.id for h in hits}) == 5


def test_drop_removes_the_collection(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    sink.upsert(make_batch(5))
    sink.drop()
    assert sink.dimension() is None
    assert sink.count() == 0
    if "list_collections" in sink.capabilities:
        assert sink.collection not in sink.list_collections()  # type: ignore[attr-defined]
    sink.ensure_collection(DIM * 2)  # the name is free again, with any dimension
    assert sink.dimension() == DIM * 2 and sink.count() == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_rejected_with_nothing_written(sink: Sink, bad: float) -> None:
    sink.ensure_collection(DIM)
    sink.upsert(make_batch(3, seed=5, tag="keep"))
    batch = make_batch(10, seed=6, tag="bad")
    batch.vectors[7, 2] = bad
    with pytest.raises(SinkError, match="NaN or inf"):
        sink.upsert(batch)
    assert sink.count() == 3
    assert {p.payload["content_hash"][:4] for p in all_points(sink)} == {"keep"}


def test_malformed_batches_are_rejected_before_writing(sink: Sink) -> None:
    sink.ensure_collection(DIM)
    good = make_batch(4)
    with pytest.raises(SinkError):
        sink.upsert(PointBatch(good.ids, good.vectors[:3], good.payloads))
    with pytest.raises(SinkError):
        sink.upsert(PointBatch(good.ids, good.vectors, good.payloads[:2]))
    with pytest.raises(SinkError, match="UUID"):
        sink.upsert(PointBatch(["not-a-uuid", *good.ids[1:]], good.vectors, good.payloads))
    assert sink.count() == 0


def test_writing_before_the_collection_exists_says_what_to_do(sink: Sink) -> None:
    with pytest.raises(SinkError, match="ensure_collection"):
        sink.upsert(make_batch(2))


def test_points_persist_across_reopening(make_sink: Any) -> None:
    first = make_sink("persist")
    first.ensure_collection(DIM)
    batch = make_batch(30)
    first.upsert(batch)
    first.flush()
    first.close()
    second = make_sink("persist")
    assert second.uri == first.uri
    assert second.dimension() == DIM
    assert second.count() == 30
    assert second.fetch([batch.ids[11]])[batch.ids[11]].payload == batch.payloads[11]


def test_with_collection_is_isolated(make_sink: Any) -> None:
    a = make_sink("iso_a")
    b = a.with_collection(make_sink.name("iso_b"))
    assert b.uri != a.uri and b.collection == make_sink.name("iso_b")
    a.ensure_collection(DIM)
    b.ensure_collection(DIM * 2)
    a.upsert(make_batch(5))
    b.upsert(make_batch(9, dim=DIM * 2))
    assert (a.count(), b.count()) == (5, 9)
    assert (a.dimension(), b.dimension()) == (DIM, DIM * 2)
    b.drop()
    assert a.count() == 5
    b.close()


def test_alias_serves_its_target_and_is_never_dropped_through(make_sink: Any) -> None:
    old, new = make_sink("gen1"), make_sink("gen2")
    assert "alias" in old.capabilities  # every sink serves readers through an alias
    old.ensure_collection(DIM)
    new.ensure_collection(DIM)
    old.upsert(make_batch(4))
    new.upsert(make_batch(6, seed=1))
    alias = make_sink.name("live")
    assert old.resolve_alias(alias) is None
    old.set_alias(alias, old.collection)
    assert old.resolve_alias(alias) == old.collection
    assert make_sink("live").count() == 4
    old.set_alias(alias, new.collection)  # switch (atomicity: see the concurrent reader test below)
    assert new.resolve_alias(alias) == new.collection
    live = make_sink("live")
    assert live.count() == 6 and live.dimension() == DIM
    with pytest.raises(SinkError):
        live.drop()  # dropping goes by the collection's own name, never through an alias
    assert new.count() == 6
    with pytest.raises(SinkError):
        old.set_alias(make_sink.name("dangling"), make_sink.name("no_such_collection"))
    old.delete_alias(alias)
    old.delete_alias(alias)  # idempotent
    assert old.resolve_alias(alias) is None


def test_alias_switch_is_atomic_for_a_concurrent_reader(make_sink: Any) -> None:
    """While the alias flips between two collections, a reader sees one whole collection or the other."""
    old, new = make_sink("flip1"), make_sink("flip2")
    assert "alias" in old.capabilities  # every sink serves readers through an alias
    old.ensure_collection(DIM)
    new.ensure_collection(DIM)
    old.upsert(make_batch(4, tag="old"))
    new.upsert(make_batch(6, seed=1, tag="new"))
    alias = make_sink.name("flip")
    old.set_alias(alias, old.collection)
    whole = {(4, frozenset({"old"})), (6, frozenset({"new"}))}
    seen: list[tuple[int, frozenset[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:  # a reader of the serving name, as a search service would be
        try:
            while not stop.is_set() and len(seen) < 5000:
                reader = make_sink("flip")
                try:
                    tags = [t for p in all_points(reader) for t in p.payload["tags"]]
                finally:
                    reader.close()
                seen.append((len(tags), frozenset(tags)))
        except BaseException as exc:
            errors.append(exc)

    def reads_after(n: int) -> None:  # wait for reads that began after the last switch
        deadline = time.monotonic() + 10
        while len(seen) < n + 2 and time.monotonic() < deadline and not errors:
            time.sleep(0.001)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        reads_after(0)
        for i in range(20):
            old.set_alias(alias, new.collection if i % 2 == 0 else old.collection)
            reads_after(len(seen))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert errors == [] and len(seen) > 20
    assert set(seen) == whole  # both were served, and never nothing, a mix or a half


def test_list_collections_names_created_collections(make_sink: Any) -> None:
    a, b = make_sink("list_a"), make_sink("list_b")
    assert "list_collections" in a.capabilities
    a.ensure_collection(DIM)
    b.ensure_collection(DIM)
    assert {a.collection, b.collection} <= set(a.list_collections())


def test_uri_is_stable_and_credential_free(make_sink: Any) -> None:
    one, two = make_sink("ident"), make_sink("ident")
    assert one.uri == two.uri
    assert urlsplit(one.uri).password is None
    assert one.collection.endswith("ident")

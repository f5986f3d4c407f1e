"""Shared by the watch/erase tests: real Delta tables with the change data feed, and the one assertion
that matters after every run — the collection equals the table."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from airflow_provider_drift.engine.errors import ProviderUnavailableError, SinkUnavailableError
from airflow_provider_drift.engine.identity import content_hash, point_id
from airflow_provider_drift.engine.providers.base import Embeddings
from airflow_provider_drift.engine.providers.openai_provider import PartialEmbeddings
from airflow_provider_drift.engine.providers.shadow import ShadowProvider
from airflow_provider_drift.engine.sinks import open_sink
from airflow_provider_drift.engine.sinks.base import PointBatch, Sink

MODEL = "openai/text-embedding-3-small"
CDF = {"delta.enableChangeDataFeed": "true"}


class CountingProvider(ShadowProvider):
    """Shadow vectors plus a log of every text sent: the bill a real provider would send.

    With ``fail_on_call``, that call fails like OpenAIProvider after an outage: the first
    ``partial`` texts of it were embedded (and billed) and ride on the error as ``partial``.
    """

    def __init__(
        self, model: str = MODEL, *, dim: int = 32, fail_on_call: int | None = None, partial: int = 0
    ) -> None:
        super().__init__(model, dim=dim)
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.partial = partial

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            got = list(texts[: self.partial])
            self.calls.append(got)
            error = ProviderUnavailableError("provider kept answering 503", hint="retry later")
            if got:
                error.partial = PartialEmbeddings(list(range(len(got))), super().embed(got))  # type: ignore[attr-defined]
            raise error
        self.calls.append(list(texts))
        return super().embed(texts)

    @property
    def texts_sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


class FlakySink(Sink):
    """A real sink that drops the connection after ``fail_after`` upserts (a server dying mid-run)."""

    def __init__(self, inner: Sink, *, fail_after: int) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.collection = inner.collection
        self.capabilities = inner.capabilities
        self.fail_after = fail_after
        self.upserts = 0

    def upsert(self, batch: PointBatch) -> None:
        if self.upserts >= self.fail_after:
            raise SinkUnavailableError(f"connection to {self.uri} reset", hint="retry when the sink is back")
        self.upserts += 1
        self.inner.upsert(batch)

    def dimension(self) -> int | None:
        return self.inner.dimension()

    def ensure_collection(self, dim: int, *, distance: Any = "cosine") -> None:
        self.inner.ensure_collection(dim, distance=distance)

    def delete(self, ids: Sequence[str]) -> None:
        self.inner.delete(ids)

    def fetch(self, ids: Sequence[str], *, with_vectors: bool = False) -> Any:
        return self.inner.fetch(ids, with_vectors=with_vectors)

    def count(self) -> int:
        return self.inner.count()

    def scroll(self, *, batch_size: int = 1000, with_vectors: bool = False) -> Any:
        return self.inner.scroll(batch_size=batch_size, with_vectors=with_vectors)

    def search(self, vector: Any, *, limit: int = 10) -> Any:
        return self.inner.search(vector, limit=limit)

    def drop(self) -> None:
        self.inner.drop()

    def with_collection(self, collection: str) -> Sink:
        return self.inner.with_collection(collection)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def write(path: str | Path, data: dict[str, list[Any]], mode: str = "append", **kw: Any) -> str:
    write_deltalake(str(path), pa.table(data), mode=mode, configuration=CDF, **kw)  # type: ignore[arg-type]
    return str(path)


def table_rows(table: str, *, key: str = "id", text: str = "body") -> dict[str, str]:
    data = DeltaTable(table).to_pyarrow_table().to_pydict()
    return {str(k): t for k, t in zip(data[key], data[text], strict=True)}


def sink_state(uri: str) -> dict[str, tuple[str, str]]:
    """point id → (key, content hash) of every point in the sink."""
    sink = open_sink(uri)
    try:
        return {p.id: (p.payload["key"], p.payload["content_hash"]) for page in sink.scroll() for p in page}
    finally:
        sink.close()


def expected_state(
    table: str, source: str, *, key: str = "id", text: str = "body"
) -> dict[str, tuple[str, str]]:
    return {
        point_id(source, k): (k, content_hash(t))
        for k, t in table_rows(table, key=key, text=text).items()
        if t is not None and t.strip()
    }


def assert_collection_equals_table(uri: str, table: str, source: str, **cols: str) -> None:
    """Same point ids as the table's keys, and each point's hash is its row's current text."""
    assert sink_state(uri) == expected_state(table, source, **cols)


def set_commit_time(table: str, version: int, at: datetime) -> None:
    """Give commit ``version`` the commit time ``at``, as if it had been written then.

    delta-rs reads the commit time from ``commitInfo.timestamp``, Spark from
    the log file's modification time: both are set.
    """
    log = Path(table) / "_delta_log" / f"{version:020d}.json"
    millis = int(at.timestamp() * 1000)
    text = re.sub(r'"timestamp":\d+', f'"timestamp":{millis}', log.read_text(), count=1)
    json.loads(text.splitlines()[0])  # still valid JSON
    log.write_text(text)
    os.utime(log, (at.timestamp(), at.timestamp()))

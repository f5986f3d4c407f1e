"""Shared by the migration tests: a Delta table of real sentences, pgvector URIs, real-model vectors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from airflow_provider_drift.engine.providers.base import EmbeddingProvider, Embeddings
from airflow_provider_drift.engine.providers.shadow import ShadowProvider

#: real-model vectors shipped with the tests (tests/data/migration-pairs/README.md)
PAIRS_DIR = Path(__file__).resolve().parents[1] / "data" / "migration-pairs"
OLD = "local/all-MiniLM-L6-v2"  # 384-d (shadow vectors in these tests)
NEW = "local/all-mpnet-base-v2"  # 768-d, same shadow family: an adapter works
OTHER = "local/all-mpnet-base-v2@other"  # another shadow family: no linear map aligns it
CDF = {"delta.enableChangeDataFeed": "true"}


@lru_cache(maxsize=1)
def corpus() -> list[str]:
    """2,000 real English sentences (CPython docstrings): a vocabulary far larger than any dimension."""
    with open(PAIRS_DIR / "texts.jsonl") as fh:
        return [json.loads(line)["text"] for line in fh]


def write_texts(
    path: Path, n: int, *, start: int = 0, mode: Literal["overwrite", "append"] = "overwrite"
) -> str:
    """A Delta table (id, body) of ``n`` corpus sentences with the change data feed on."""
    texts = corpus()[start : start + n]
    table = pa.table({"id": list(range(start, start + n)), "body": texts})
    write_deltalake(str(path), table, mode=mode, configuration=CDF)
    return str(path)


def pg_uri(dsn: str, table: str) -> str:
    """A ``postgresql://...?table=`` sink URI from the test server's key=value DSN."""
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "postgres")), safe="")
    host, port = params.pop("host", "127.0.0.1"), params.pop("port", 5432)
    db = quote(str(params.pop("dbname", "postgres")), safe="")
    query = urlencode({**{k: str(v) for k, v in params.items()}, "table": table})
    return f"postgresql://{user}@{host}:{port}/{db}?{query}"


class CountingProvider(ShadowProvider):
    """Shadow vectors plus a log of every text sent (the bill a real provider would send)."""

    def __init__(self, model: str, *, dim: int | None = None, fail_on_call: int | None = None) -> None:
        super().__init__(model, dim=dim)
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def embed(self, texts: Sequence[str]) -> Embeddings:
        from airflow_provider_drift.engine.errors import ProviderUnavailableError

        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise ProviderUnavailableError("provider kept answering 503", hint="retry later")
        return super().embed(texts)

    @property
    def texts_sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


class RealModelProvider(EmbeddingProvider):
    """The real all-MiniLM-L6-v2 / all-mpnet-base-v2 vectors of the corpus, served by text.

    Torch is not needed: the vectors were computed once with the real models
    (see the data folder's README), so this answers exactly as the model would
    for these sentences, and refuses any other text.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        files = {OLD: "minilm-l6.f16.npy", NEW: "mpnet-base.f16.npy"}
        vectors = np.load(PAIRS_DIR / files[model]).astype(np.float32)
        self.dim = vectors.shape[1]
        self._by_text = {t: vectors[i] for i, t in enumerate(corpus())}

    def embed(self, texts: Sequence[str]) -> Embeddings:
        from airflow_provider_drift.engine.errors import ProviderError

        missing = [t for t in texts if t not in self._by_text]
        if missing:
            raise ProviderError(f"no vector for {missing[0]!r}", hint="only corpus sentences are known")
        vectors = np.vstack([self._by_text[t] for t in texts]) if texts else np.zeros((0, self.dim))
        return Embeddings(
            vectors=vectors.astype(np.float32), tokens=self.estimate_tokens(texts), cost_usd=0.0
        )

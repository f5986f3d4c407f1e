"""The sink port: one interface every vector store implements.

The engine talks only to :class:`Sink`. A sink stores points (id, vector,
payload) in one collection/table; ``uri`` is its credential-free identity as
recorded in the ledger, so two handles on the same collection compare equal.
Optional abilities (aliases for atomic cutover, ...) are declared in
``capabilities`` and checked with :meth:`Sink.require`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError

Distance = Literal["cosine", "dot", "euclid"]

# Payload fields the engine writes on every point (text only when asked).
PAYLOAD_KEY = "key"
PAYLOAD_SOURCE = "source"
PAYLOAD_HASH = "content_hash"
PAYLOAD_MODEL = "model"
PAYLOAD_RUN = "run_id"
PAYLOAD_VERSION = "source_version"
PAYLOAD_TEXT = "text"


@dataclass(frozen=True)
class PointBatch:
    """Points to upsert: ``vectors`` is float32 of shape (len(ids), dim)."""

    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class StoredPoint:
    id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class Sink(ABC):
    """A vector collection (Qdrant) or table (pgvector)."""

    #: credential-free identity, e.g. ``qdrant://host:6333/docs``
    uri: str
    #: the collection/table name inside the store
    collection: str
    #: optional abilities: "alias" (atomic cutover), "search", ...
    capabilities: frozenset[str] = frozenset()

    def require(self, capability: str, *, for_what: str) -> None:
        if capability not in self.capabilities:
            raise ConfigError(
                f"sink {self.uri} cannot {capability} (needed for {for_what})",
                hint="use a sink type that supports it (see the README's sink table)",
            )

    @abstractmethod
    def dimension(self) -> int | None:
        """Vector size of the existing collection, or None if it does not exist."""

    @abstractmethod
    def ensure_collection(self, dim: int, *, distance: Distance = "cosine") -> None:
        """Create the collection if missing; raise DimensionMismatchError if it has another size."""

    @abstractmethod
    def upsert(self, batch: PointBatch) -> None:
        """Insert or overwrite points by id. Must be idempotent."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Remove points by id; ids that are absent are ignored."""

    @abstractmethod
    def fetch(self, ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, StoredPoint]:
        """Return the stored points among ``ids`` (absent ids are left out)."""

    @abstractmethod
    def count(self) -> int:
        """Number of points in the collection (0 if it does not exist)."""

    @abstractmethod
    def scroll(self, *, batch_size: int = 1000, with_vectors: bool = False) -> Iterator[list[StoredPoint]]:
        """Iterate over every point in the collection."""

    @abstractmethod
    def search(self, vector: Sequence[float] | np.ndarray, *, limit: int = 10) -> list[Hit]:
        """Nearest neighbours of ``vector`` by the collection's distance."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the whole collection (used by migrations and tests)."""

    @abstractmethod
    def with_collection(self, collection: str) -> Sink:
        """A handle on another collection of the same store (dual-write targets)."""

    def distance(self) -> str | None:
        """The collection's distance ("cosine", "dot", "euclid"), None if it does not exist."""
        return None

    # --- optional: aliases, for atomic cutover (capability "alias") ---

    def list_collections(self) -> list[str]:
        self.require("list_collections", for_what="listing collections")
        raise NotImplementedError

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic step (create or switch)."""
        self.require("alias", for_what="an atomic cutover")
        raise NotImplementedError

    def resolve_alias(self, alias: str) -> str | None:
        self.require("alias", for_what="resolving an alias")
        raise NotImplementedError

    def delete_alias(self, alias: str) -> None:
        self.require("alias", for_what="deleting an alias")
        raise NotImplementedError

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make writes durable; stores that persist on every call need nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and files."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

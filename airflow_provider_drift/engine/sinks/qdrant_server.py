"""A sink on qdrant-client: a Qdrant server, or the client's in-process ``:memory:`` store.

The memory store runs the very same client calls as a server, so the sink
contract suite run against ``qdrant+memory://`` keeps the server code path
honest without a server binary. Memory stores are kept per process by name
(``?store=``), so every handle in a process sees one store, as with a server.

Errors are sorted by whether a retry can help: unreachable server, timeouts,
429 and 5xx become :class:`SinkUnavailableError`; everything else
:class:`SinkError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DimensionMismatchError, DriftError, SinkError, SinkUnavailableError
from . import (
    QDRANT_MAX_DIM,
    QdrantServerSpec,
    bool_option,
    check_dimension,
    check_ids,
    check_query_vector,
    env_api_key,
    number_option,
    parse_qdrant_uri,
    validate_batch,
    validate_collection_name,
)
from .base import Distance, Hit, PointBatch, Sink, StoredPoint

_DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclid": "EUCLID"}
_OPTIONS = {
    "api_key",
    "batch_size",
    "timeout",
    "client",
    "https",
    "grpc",
    "prefer_grpc",
    "grpc_port",
    "prefix",
}
_IO_CHUNK = 1024

_MEMORY_STORES: dict[str, Any] = {}
_MEMORY_LOCK = threading.Lock()


def _memory_client(store: str) -> Any:
    with _MEMORY_LOCK:
        if store not in _MEMORY_STORES:
            from qdrant_client import QdrantClient

            _MEMORY_STORES[store] = QdrantClient(":memory:")
        return _MEMORY_STORES[store]


def forget_memory_store(store: str) -> None:
    """Discard a named ``qdrant+memory://`` store and everything in it (tests use one per test)."""
    with _MEMORY_LOCK:
        client = _MEMORY_STORES.pop(store, None)
    if client is not None:
        client.close()


class _SharedClient:
    """A client shared by a sink and its ``with_collection`` siblings; closed by the last one."""

    def __init__(self, client: Any, *, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.refs = 1
        self.lock = threading.Lock()

    def retain(self) -> _SharedClient:
        with self.lock:
            self.refs += 1
        return self

    def release(self) -> None:
        with self.lock:
            self.refs -= 1
            if self.refs == 0 and self.owned:
                self.client.close()


class QdrantServerSink(Sink):
    """A collection on a Qdrant server (or qdrant-client's memory store)."""

    capabilities = frozenset({"alias", "search", "list_collections"})

    def __init__(self, shared: _SharedClient, spec: QdrantServerSpec, *, batch_size: int = 512) -> None:
        self._shared = shared
        self._spec = spec
        self.collection = validate_collection_name(spec.collection)
        self.uri = spec.identity
        self.batch_size = number_option(batch_size, name="batch_size", minimum=1)
        self._target: str | None = None
        self._config: tuple[int, str] | None = None
        self._closed = False

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> QdrantServerSink:
        spec = parse_qdrant_uri(uri)
        merged: dict[str, Any] = {**dict(spec.options), **options}
        unknown = set(merged) - _OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} for Qdrant sink {spec.identity}",
                hint=f"accepted: {sorted(_OPTIONS)}",
            )
        batch_size = merged.pop("batch_size", 512)
        client = merged.pop("client", None)
        if client is not None:
            shared = _SharedClient(client, owned=False)
        elif spec.mode == "memory":
            shared = _SharedClient(_memory_client(spec.store), owned=False)
        else:
            shared = _SharedClient(_server_client(spec, merged), owned=True)
        return cls(shared, spec, batch_size=batch_size)

    @property
    def client(self) -> Any:
        """The underlying ``QdrantClient`` (for queries the sink interface does not cover)."""
        return self._shared.client

    @property
    def target(self) -> str:
        """The collection this handle operates on: the alias target, resolved on first use."""
        if self._target is None:
            self._target = self.resolve_alias(self.collection) or self.collection
        return self._target

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DriftError:
            raise
        except Exception as exc:
            raise _translate(exc, action, self.uri) from exc

    # -- collection ------------------------------------------------------------------------------

    def _describe(self) -> tuple[int, str] | None:
        if self._config is not None:
            return self._config
        with self._errors("read the collection"):
            if not self.client.collection_exists(self.target):
                return None
            params = self.client.get_collection(self.target).config.params.vectors
        if isinstance(params, dict):
            if "" not in params:
                raise SinkError(
                    f"collection {self.target} ({self.uri}) uses named vectors only",
                    hint="use a collection with one unnamed vector, e.g. one created by drift",
                )
            params = params[""]
        self._config = (int(params.size), str(params.distance.value).lower())
        return self._config

    def dimension(self) -> int | None:
        config = self._describe()
        return config[0] if config else None

    def distance(self) -> str | None:
        config = self._describe()
        return config[1] if config else None

    def ensure_collection(self, dim: int, *, distance: Distance = "cosine") -> None:
        if distance not in _DISTANCES:
            raise ConfigError(f"unknown distance {distance!r}", hint=f"use one of {sorted(_DISTANCES)}")
        dim = check_dimension(dim, maximum=QDRANT_MAX_DIM, store="a Qdrant collection")
        existing = self._describe()
        if existing is None:
            from qdrant_client import models

            params = models.VectorParams(
                size=int(dim), distance=getattr(models.Distance, _DISTANCES[distance])
            )
            try:
                with self._errors("create the collection"):
                    self.client.create_collection(self.target, vectors_config=params)
            except SinkError:
                if self._describe() is None:  # not a lost creation race: a real failure
                    raise
            existing = self._describe()
            assert existing is not None
        if existing[0] != dim:
            raise DimensionMismatchError(
                f"collection {self.target} ({self.uri}) has {existing[0]}-d vectors, not {dim}-d",
                hint="use another collection for this model, or migrate the collection to it",
                expected=dim,
                actual=existing[0],
            )
        if existing[1] != distance:
            raise SinkError(
                f"collection {self.target} ({self.uri}) uses {existing[1]} distance, not {distance}",
                hint="use another collection, or the distance it was created with",
            )

    def drop(self) -> None:
        if self.resolve_alias(self.collection) is not None:
            raise SinkError(
                f"{self.collection} is an alias of {self.target}; drop refuses to go through an alias",
                hint="drop the collection by its own name, or remove the alias with delete_alias()",
            )
        with self._errors("drop the collection"):
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
        self._config = None
        self._target = None

    def list_collections(self) -> list[str]:
        with self._errors("list collections"):
            return sorted(c.name for c in self.client.get_collections().collections)

    def with_collection(self, collection: str) -> QdrantServerSink:
        spec = dataclasses.replace(self._spec, collection=validate_collection_name(collection))
        return QdrantServerSink(self._shared.retain(), spec, batch_size=self.batch_size)

    # -- aliases ---------------------------------------------------------------------------------

    def _aliases(self) -> dict[str, str]:
        with self._errors("read aliases"):
            return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection``: delete + create in one request, applied atomically."""
        from qdrant_client import models

        validate_collection_name(alias, what="alias")
        validate_collection_name(collection)
        with self._errors("check collections"):
            if self.client.collection_exists(alias) and alias not in self._aliases():
                raise SinkError(
                    f"cannot create alias {alias}: a collection of that name exists ({self.uri})",
                    hint="choose another alias name",
                )
            if collection not in self.list_collections():
                raise SinkError(
                    f"cannot point alias {alias} at {collection}: no such collection ({self.uri})",
                    hint="create the collection first (ensure_collection)",
                )
        ops: list[Any] = []
        if alias in self._aliases():
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        with self._errors("switch the alias"):
            self.client.update_collection_aliases(change_aliases_operations=ops)

    def resolve_alias(self, alias: str) -> str | None:
        return self._aliases().get(alias)

    def delete_alias(self, alias: str) -> None:
        from qdrant_client import models

        if alias in self._aliases():
            with self._errors("delete the alias"):
                op = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                self.client.update_collection_aliases(change_aliases_operations=[op])

    # -- points ----------------------------------------------------------------------------------

    def _require(self) -> tuple[int, str]:
        config = self._describe()
        if config is None:
            raise SinkError(
                f"collection {self.target} does not exist ({self.uri})",
                hint="call ensure_collection(dim) before writing",
            )
        return config

    def upsert(self, batch: PointBatch) -> None:
        if not len(batch):
            return
        from qdrant_client import models

        vectors = validate_batch(batch, dim=self._require()[0], uri=self.uri)
        step = self.batch_size
        with self._errors("upsert points"):
            for start in range(0, len(batch), step):
                stop = start + step
                points = models.Batch(
                    ids=list(batch.ids[start:stop]),
                    vectors=vectors[start:stop].tolist(),
                    payloads=list(batch.payloads[start:stop]),
                )
                self.client.upsert(self.target, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        wanted = check_ids(ids, uri=self.uri)
        if not wanted or self._describe() is None:
            return
        with self._errors("delete points"):
            for start in range(0, len(wanted), _IO_CHUNK):
                selector = models.PointIdsList(points=list(wanted[start : start + _IO_CHUNK]))
                self.client.delete(self.target, points_selector=selector, wait=True)

    def fetch(self, ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, StoredPoint]:
        wanted = check_ids(ids, uri=self.uri)
        out: dict[str, StoredPoint] = {}
        if not wanted or self._describe() is None:
            return out
        with self._errors("fetch points"):
            for start in range(0, len(wanted), _IO_CHUNK):
                chunk = wanted[start : start + _IO_CHUNK]
                for rec in self.client.retrieve(
                    self.target, ids=chunk, with_payload=True, with_vectors=with_vectors
                ):
                    out[str(rec.id)] = _stored(rec, with_vectors)
        return out

    def count(self) -> int:
        if self._describe() is None:
            return 0
        with self._errors("count points"):
            return int(self.client.count(self.target, exact=True).count)

    def scroll(self, *, batch_size: int = 1000, with_vectors: bool = False) -> Iterator[list[StoredPoint]]:
        if self._describe() is None:
            return
        offset: Any = None
        while True:
            with self._errors("scroll points"):
                records, offset = self.client.scroll(
                    self.target, limit=batch_size, offset=offset, with_payload=True, with_vectors=with_vectors
                )
            if records:
                yield [_stored(rec, with_vectors) for rec in records]
            if offset is None:
                return

    def search(self, vector: Sequence[float] | np.ndarray, *, limit: int = 10) -> list[Hit]:
        config = self._describe()
        if config is None:
            return []
        query = check_query_vector(vector, dim=config[0], uri=self.uri)
        with self._errors("search"):
            points = self.client.query_points(self.target, query=query, limit=limit, with_payload=True).points
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shared.release()


def _server_client(spec: QdrantServerSpec, options: dict[str, Any]) -> Any:
    from qdrant_client import QdrantClient

    timeout = options.get("timeout")
    return QdrantClient(
        host=spec.host,
        port=spec.port,
        grpc_port=number_option(options.get("grpc_port", spec.grpc_port), name="grpc_port", minimum=1),
        prefer_grpc=bool_option(
            options.get("prefer_grpc", options.get("grpc", spec.prefer_grpc)), name="grpc"
        ),
        https=bool_option(options.get("https", spec.https), name="https"),
        prefix=options.get("prefix", spec.prefix),
        api_key=options.get("api_key") or env_api_key(),
        timeout=None if timeout is None else number_option(timeout, name="timeout", minimum=1),
        check_compatibility=False,
    )


def _stored(rec: Any, with_vectors: bool) -> StoredPoint:
    vector = rec.vector if with_vectors else None
    if isinstance(vector, dict):
        vector = vector.get("")
    array = np.asarray(vector, dtype=np.float32) if vector is not None else None
    return StoredPoint(id=str(rec.id), payload=dict(rec.payload or {}), vector=array)


_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL"}


def _translate(exc: Exception, action: str, uri: str) -> DriftError:
    """Map a qdrant-client / transport exception to a transient or terminal sink error."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    status: int | None = None
    transient = isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError)
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code
        transient = status is not None and (status == 429 or status >= 500)
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        with contextlib.suppress(Exception):
            name = code().name
            transient = name in _TRANSIENT_GRPC
            if name == "UNAUTHENTICATED":
                status = 401
    if transient:
        return SinkUnavailableError(
            f"Qdrant at {uri} is unreachable or overloaded while trying to {action}: {_short(exc)}",
            hint="check the server is running and reachable (host, port, https); the task can be retried",
        )
    if status in (401, 403):
        return SinkError(
            f"Qdrant at {uri} refused the credentials while trying to {action}",
            hint="set the API key (api_key= option, the connection's password, or QDRANT_API_KEY)",
        )
    return SinkError(f"Qdrant at {uri} failed to {action}: {_short(exc)}", hint="see the message from Qdrant")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

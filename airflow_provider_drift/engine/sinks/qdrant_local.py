"""The embedded default sink: Qdrant's own engine in-process, no server.

Built on ``qdrant-edge`` rather than qdrant-client's ``path=`` mode, which
pickles every point into SQLite (~126 points/s here); an edge shard upserts
~20k points/s and recovers from its write-ahead log after a crash.

Layout under the root directory::

    ROOT/<collection>/          one edge shard per collection
    ROOT/aliases.json           alias -> collection, replaced atomically
    ROOT/.locks/<name>.lock     fcntl locks (never deleted: deleting lock files races)

An edge shard can be open in one process only (its WAL is locked). A handle
therefore takes an exclusive ``flock`` on its collection when it first touches
it and keeps it until :meth:`close`; another process waits up to
``lock_timeout`` seconds, then gets a :class:`SinkUnavailableError`. Handles
in one process share the open shard (a refcounted registry), so opening the
same collection twice in a process never deadlocks.

Disk space is checked before the engine touches the disk (see
:mod:`.local_disk`: its mapped files turn a full disk into SIGBUS); without
room a :class:`StorageFullError` (transient) is raised and nothing is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConfigError,
    DimensionMismatchError,
    DriftError,
    SinkError,
    SinkUnavailableError,
)
from . import (
    QDRANT_MAX_DIM,
    check_dimension,
    check_ids,
    check_query_vector,
    number_option,
    parse_local_uri,
    validate_batch,
    validate_collection_name,
)
from .base import Distance, Hit, PointBatch, Sink, StoredPoint
from .local_disk import POINT_OVERHEAD, WRITE_COPIES, batch_bytes, check_free_space, wal_bytes

_CONFIG_FILE = "edge_config.json"
_EDGE_DISTANCE = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid"}
_DRIFT_DISTANCE = {v: k for k, v in _EDGE_DISTANCE.items()}
_OPTIONS = {"batch_size", "lock_timeout"}
_IO_CHUNK = 4096


def split_shared_payload(
    payloads: Sequence[dict[str, Any]],
) -> tuple[dict[str, Any], Sequence[dict[str, Any]]]:
    """Split off the fields every payload of a batch shares (source, model, run...).

    Why: qdrant-edge converts a payload field by field under the GIL (~4 µs a
    field), which made payload conversion most of an upsert. Fields shared by
    the whole batch are set once with ``set_payload`` after the upsert (which
    replaces the point's payload, so nothing stale survives), leaving the
    per-point dicts with only what differs (key, content hash).
    """
    if len(payloads) < 2:
        return {}, payloads
    missing = object()
    shared = {
        k: v
        for k, v in payloads[0].items()
        if isinstance(v, str | int | float | bool | None)
        and all(p.get(k, missing) == v and type(p[k]) is type(v) for p in payloads)
    }
    if not shared:
        return {}, payloads
    return shared, [{k: v for k, v in p.items() if k not in shared} for p in payloads]


class _OpenShard:
    """One collection directory opened by this process, shared by its handles."""

    def __init__(self, directory: Path, lock_file: Any) -> None:
        self.directory = directory
        self.lock_file = lock_file
        self.shard: Any = None
        self.config: tuple[int, str] | None = None
        self.refs = 0
        self.mutex = threading.RLock()
        self.pid = os.getpid()


_REGISTRY: dict[Path, _OpenShard] = {}
_REGISTRY_LOCK = threading.Lock()


def _read_config(directory: Path) -> tuple[int, str] | None:
    """Return (size, distance) of the shard in ``directory``, or None if there is none."""
    try:
        raw = json.loads((directory / _CONFIG_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SinkError(
            f"cannot read {directory / _CONFIG_FILE}: {exc}", hint="the shard may be damaged"
        ) from exc
    params = raw.get("vectors", {}).get("")
    if not params:
        raise SinkError(
            f"{directory} holds no unnamed dense vector", hint="use a collection created by drift"
        )
    return int(params["size"]), _DRIFT_DISTANCE.get(params.get("distance", ""), str(params.get("distance")))


def _lock(path: Path, *, timeout: float, what: str) -> Any:
    """Open and exclusively flock ``path``, waiting at most ``timeout`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held until the sink closes
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise SinkUnavailableError(
                    f"another run holds the embedded Qdrant collection {what} (pid {holder}); "
                    f"waited {timeout:g}s for it",
                    hint="the embedded sink allows one process per collection: wait for the other run, raise "
                    "lock_timeout, or use a Qdrant server (qdrant://HOST:6333/COLLECTION), which allows "
                    "parallel writers",
                    holder=holder,
                ) from None
            time.sleep(0.05)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _acquire(root: Path, name: str, *, timeout: float) -> _OpenShard:
    directory = root / name
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get(directory)
        if entry is None or entry.pid != os.getpid():
            lock_file = _lock(root / ".locks" / f"{name}.lock", timeout=timeout, what=str(directory))
            entry = _REGISTRY[directory] = _OpenShard(directory, lock_file)
        entry.refs += 1
        return entry


def _release(entry: _OpenShard) -> None:
    with _REGISTRY_LOCK:
        entry.refs -= 1
        if entry.refs > 0:
            return
        _REGISTRY.pop(entry.directory, None)
        with entry.mutex:
            try:
                if entry.shard is not None:
                    entry.shard.flush()
                    entry.shard.close()
            finally:
                entry.shard = None
                entry.lock_file.close()  # releases the flock


class AliasFile:
    """``ROOT/aliases.json``: alias -> collection, read lock-free, rewritten whole with os.replace.

    Writers serialise on ``.locks/aliases.lock`` so two processes switching
    different aliases never lose each other's change; readers see either the
    old or the new file, never a half-written one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "aliases.json"

    def read(self) -> dict[str, str]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot read {self.path}: {exc}", hint="fix or remove the aliases file") from exc
        return dict(raw.get("aliases", {}))

    def resolve(self, name: str) -> str | None:
        if not self.path.exists():
            return None
        return self.read().get(name)

    def set(self, alias: str, collection: str) -> None:
        self._update(lambda aliases: aliases.__setitem__(alias, collection))

    def delete(self, alias: str) -> None:
        self._update(lambda aliases: aliases.pop(alias, None))

    def forget_collection(self, collection: str) -> None:
        """Drop every alias of a deleted collection (as a Qdrant server does)."""
        if any(target == collection for target in self.read().values()):
            self._update(lambda a: [a.pop(k) for k in [k for k, v in a.items() if v == collection]])

    def _update(self, change: Any) -> None:
        lock = _lock(self.root / ".locks" / "aliases.lock", timeout=30.0, what=str(self.path))
        try:
            aliases = self.read()
            change(aliases)
            scratch = self.path.with_name(f".aliases-{uuid.uuid4().hex[:8]}.json")
            with open(scratch, "w") as out:
                json.dump({"aliases": aliases}, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, self.path)
        finally:
            lock.close()


@contextlib.contextmanager
def _edge_errors(action: str, uri: str) -> Iterator[None]:
    try:
        yield
    except DriftError:
        raise
    except Exception as exc:
        if "WouldBlock" in str(exc):
            raise SinkUnavailableError(
                f"the embedded Qdrant collection {uri} is open in another process",
                hint="wait for it to finish, or use a Qdrant server for parallel writers",
            ) from exc
        raise SinkError(
            f"embedded Qdrant failed to {action} ({uri}): {exc}", hint="check the path and free disk space"
        ) from exc


class QdrantLocalSink(Sink):
    """A collection in an embedded Qdrant store under ``root``."""

    capabilities = frozenset({"alias", "search", "list_collections"})

    def __init__(
        self,
        root: str | os.PathLike[str],
        collection: str,
        *,
        batch_size: int = 1024,
        lock_timeout: float = 30.0,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.collection = validate_collection_name(collection)
        self.uri = f"qdrant+local://{self.root.as_posix()}/{collection}"
        self.batch_size = number_option(batch_size, name="batch_size", minimum=1)
        self.lock_timeout = number_option(lock_timeout, name="lock_timeout", kind=float)
        self._aliases = AliasFile(self.root)
        self._entry: _OpenShard | None = None
        self._release: weakref.finalize | None = None

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> QdrantLocalSink:
        root, collection, params = parse_local_uri(uri)
        merged = {**params, **options}
        unknown = set(merged) - _OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} for embedded Qdrant sink {uri}",
                hint=f"accepted: {sorted(_OPTIONS)}",
            )
        return cls(root, collection, **merged)

    # -- opening ---------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """The collection this handle operates on (the alias target, once the handle is open)."""
        if self._entry is not None:
            return self._entry.directory.name
        return self._aliases.resolve(self.collection) or self.collection

    def _open(self, *, create_root: bool) -> _OpenShard | None:
        """Lock the target collection (once per handle); None if nothing exists and not creating."""
        if self._entry is not None and self._entry.pid == os.getpid():
            return self._entry
        if self._release is not None:  # inherited through fork: the parent owns that shard and lock
            self._release.detach()
        self._entry = self._release = None
        target = self.target
        if not create_root and not (self.root / target / _CONFIG_FILE).exists():
            return None
        entry = _acquire(self.root, target, timeout=self.lock_timeout)
        self._entry = entry
        # a handle dropped without close() still gives its share back (and the lock, when last)
        self._release = weakref.finalize(self, _release, entry)
        return entry

    @contextlib.contextmanager
    def _shard(self, action: str) -> Iterator[Any]:
        """Yield the open shard (None if the collection does not exist) under the entry's mutex."""
        entry = self._open(create_root=False)
        if entry is None:
            yield None
            return
        with entry.mutex, _edge_errors(action, self.uri):
            if entry.shard is None and (entry.directory / _CONFIG_FILE).exists():
                import qdrant_edge  # first use, or re-created after a drop

                entry.config = _read_config(entry.directory)
                # loading replays the write-ahead log into the segments: room for that, too
                self._check_free(wal_bytes(entry.directory) * WRITE_COPIES, f"load the collection ({action})")
                entry.shard = qdrant_edge.EdgeShard.load(str(entry.directory))
            yield entry.shard

    # -- collection ------------------------------------------------------------------------------

    def dimension(self) -> int | None:
        config = self._config()
        return config[0] if config else None

    def distance(self) -> str | None:
        config = self._config()
        return config[1] if config else None

    def _config(self) -> tuple[int, str] | None:
        if self._entry is not None:
            with self._entry.mutex:
                if self._entry.shard is not None:
                    return self._entry.config
        return _read_config(self.root / self.target)

    def ensure_collection(self, dim: int, *, distance: Distance = "cosine") -> None:
        if distance not in _EDGE_DISTANCE:
            raise ConfigError(f"unknown distance {distance!r}", hint=f"use one of {sorted(_EDGE_DISTANCE)}")
        dim = check_dimension(dim, maximum=QDRANT_MAX_DIM, store="an embedded Qdrant collection")
        entry = self._open(create_root=True)
        assert entry is not None
        with entry.mutex:
            if entry.shard is None and not (entry.directory / _CONFIG_FILE).exists():
                self._create(entry, int(dim), distance)
            # An existing shard loads on first use (~2 s at 1M points): a run with nothing to write
            # never pays for it.
            existing = entry.config if entry.shard is not None else _read_config(entry.directory)
        assert existing is not None
        if existing[0] != dim:
            raise DimensionMismatchError(
                f"collection {self.target} at {self.root} has {existing[0]}-d vectors, not {dim}-d",
                hint="use another collection for this model, or migrate the collection to it",
                expected=dim,
                actual=existing[0],
            )
        if existing[1] != distance:
            raise SinkError(
                f"collection {self.target} at {self.root} uses {existing[1]} distance, not {distance}",
                hint="use another collection, or the distance it was created with",
            )

    def _check_free(self, needed: int, action: str) -> None:
        check_free_space(self.root, needed, action=f"{action} in the embedded Qdrant collection {self.uri}")

    def _create(self, entry: _OpenShard, dim: int, distance: str) -> None:
        """Create the shard in a scratch directory and rename it in, so a crash leaves no half shard."""
        import qdrant_edge as qe

        if entry.directory.exists():
            raise SinkError(
                f"{entry.directory} exists but holds no Qdrant shard",
                hint="remove or rename that directory, or choose another collection name",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_free(0, "create the collection")
        scratch = self.root / f".tmp-{entry.directory.name}-{uuid.uuid4().hex[:8]}"
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=getattr(qe.Distance, _EDGE_DISTANCE[distance]))
        )
        with _edge_errors("create the collection", self.uri):
            qe.EdgeShard.create(str(scratch), config).close()
            os.rename(scratch, entry.directory)
            entry.shard = qe.EdgeShard.load(str(entry.directory))
            entry.config = (dim, distance)

    def drop(self) -> None:
        if self._aliases.resolve(self.collection) is not None:
            raise SinkError(
                f"{self.collection} is an alias of {self.target}; drop refuses to go through an alias",
                hint="drop the collection by its own name, or remove the alias with delete_alias()",
            )
        entry = self._open(create_root=False)
        if entry is None:
            return
        with entry.mutex, _edge_errors("drop the collection", self.uri):
            if entry.shard is not None:
                entry.shard.close()
            entry.shard = entry.config = None
            if entry.directory.exists():
                trash = self.root / f".trash-{entry.directory.name}-{uuid.uuid4().hex[:8]}"
                os.rename(entry.directory, trash)
                shutil.rmtree(trash, ignore_errors=True)
        self._aliases.forget_collection(entry.directory.name)

    def list_collections(self) -> list[str]:
        """Names of the collections under this sink's root."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / _CONFIG_FILE).exists()
        )

    def with_collection(self, collection: str) -> QdrantLocalSink:
        return QdrantLocalSink(
            self.root, collection, batch_size=self.batch_size, lock_timeout=self.lock_timeout
        )

    # -- aliases ---------------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic file replace (create or switch)."""
        validate_collection_name(alias, what="alias")
        validate_collection_name(collection)
        if (self.root / alias / _CONFIG_FILE).exists():
            raise SinkError(
                f"cannot create alias {alias}: a collection of that name exists in {self.root}",
                hint="choose another alias name",
            )
        if not (self.root / collection / _CONFIG_FILE).exists():
            raise SinkError(
                f"cannot point alias {alias} at {collection}: no such collection in {self.root}",
                hint="create the collection first (ensure_collection)",
            )
        self._aliases.set(alias, collection)

    def resolve_alias(self, alias: str) -> str | None:
        return self._aliases.resolve(alias)

    def delete_alias(self, alias: str) -> None:
        self._aliases.delete(alias)

    # -- points ----------------------------------------------------------------------------------

    def upsert(self, batch: PointBatch) -> None:
        if not len(batch):
            return
        with self._shard("upsert points") as shard:
            if shard is None:
                raise SinkError(
                    f"collection {self.target} does not exist in {self.root}",
                    hint="call ensure_collection(dim) before writing",
                )
            assert self._entry is not None and self._entry.config is not None
            vectors = validate_batch(batch, dim=self._entry.config[0], uri=self.uri)
            self._check_free(batch_bytes(vectors, batch.payloads), f"write {len(batch):,} points")
            import qdrant_edge as qe

            point, op = qe.Point, qe.UpdateOperation
            shared, payloads = split_shared_payload(batch.payloads)
            ids, step = batch.ids, self.batch_size
            for start in range(0, len(ids), step):
                stop = start + step
                # A memoryview per row: qdrant-edge reads it through the buffer protocol,
                # ~2.5x faster than a numpy row or a list of floats.
                rows: list[Any] = [memoryview(row) for row in vectors[start:stop]]  # stubs say list[float]
                chunk = ids[start:stop]
                shard.update(
                    op.upsert_points(
                        [point(i, v, p) for i, v, p in zip(chunk, rows, payloads[start:stop], strict=True)]
                    )
                )
                if shared:
                    shard.update(op.set_payload(list(chunk), shared))

    def delete(self, ids: Sequence[str]) -> None:
        wanted = check_ids(ids, uri=self.uri)
        with self._shard("delete points") as shard:
            if shard is None:
                return
            import qdrant_edge as qe

            self._check_free(len(wanted) * POINT_OVERHEAD * WRITE_COPIES, f"delete {len(wanted):,} points")
            for start in range(0, len(wanted), _IO_CHUNK):
                chunk: list[Any] = wanted[start : start + _IO_CHUNK]
                shard.update(qe.UpdateOperation.delete_points(chunk))

    def fetch(self, ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, StoredPoint]:
        wanted = check_ids(ids, uri=self.uri)
        out: dict[str, StoredPoint] = {}
        with self._shard("fetch points") as shard:
            if shard is None:
                return out
            for start in range(0, len(wanted), _IO_CHUNK):
                for rec in shard.retrieve(wanted[start : start + _IO_CHUNK], True, with_vectors):
                    out[str(rec.id)] = _stored(rec, with_vectors)
        return out

    def count(self) -> int:
        import qdrant_edge as qe

        with self._shard("count points") as shard:
            return 0 if shard is None else int(shard.count(qe.CountRequest(exact=True)))

    def scroll(self, *, batch_size: int = 1000, with_vectors: bool = False) -> Iterator[list[StoredPoint]]:
        import qdrant_edge as qe

        offset: Any = None
        while True:
            with self._shard("scroll points") as shard:
                if shard is None:
                    return
                request = qe.ScrollRequest(
                    offset=offset, limit=batch_size, with_payload=True, with_vector=with_vectors
                )
                records, offset = shard.scroll(request)
            if records:
                yield [_stored(rec, with_vectors) for rec in records]
            if offset is None:
                return

    def search(self, vector: Sequence[float] | np.ndarray, *, limit: int = 10) -> list[Hit]:
        import qdrant_edge as qe

        with self._shard("search") as shard:
            if shard is None:
                return []
            assert self._entry is not None and self._entry.config is not None
            query = check_query_vector(vector, dim=self._entry.config[0], uri=self.uri)
            request = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(query), with_payload=True)
            return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in shard.query(request)]

    def optimize(self) -> bool:
        """Build the HNSW index and merge segments now (blocking); True if anything changed."""
        with self._shard("optimize") as shard:
            return bool(shard.optimize()) if shard is not None else False

    def flush(self) -> None:
        entry = self._entry
        if entry is not None and entry.pid == os.getpid() and entry.shard is None:
            return  # never loaded here, so nothing of ours to flush
        with self._shard("flush") as shard:
            if shard is not None:
                shard.flush()

    def close(self) -> None:
        release, self._release, self._entry = self._release, None, None
        if release is not None:
            release()


def _stored(rec: Any, with_vectors: bool) -> StoredPoint:
    vector = np.asarray(rec.vector, dtype=np.float32) if with_vectors and rec.vector is not None else None
    return StoredPoint(id=str(rec.id), payload=dict(rec.payload or {}), vector=vector)

"""Open a sink from a URI: the one place that knows every sink scheme.

Implementations are imported only when their scheme is used, so the engine
imports without qdrant-client, qdrant-edge or psycopg installed. A sink's
``uri`` attribute is its canonical, credential-free identity (what the ledger
records); the URI a user types may carry transport options and is parsed here.

Supported forms::

    qdrant+local://PATH/COLLECTION        embedded Qdrant (qdrant-edge), the default
    qdrant+local://COLLECTION             ... under $DRIFT_HOME/qdrant or DEFAULT_LOCAL_ROOT
    qdrant://host:6333/COLLECTION         Qdrant server over HTTP (?https=true, ?grpc=true&grpc_port=6334,
    qdrants://host:6333/COLLECTION        ?prefix=..., ?timeout=...); API key via api_key= or QDRANT_API_KEY
    qdrant+memory://COLLECTION            qdrant-client's in-process :memory: store (?store=NAME)
    pgvector://user:pass@host:5432/DB/TABLE
    postgresql://user:pass@host:5432/DB?table=TABLE
"""

from __future__ import annotations

import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from ..errors import ConfigError, SinkError
from .base import PointBatch, Sink

__all__ = [
    "DEFAULT_LOCAL_ROOT",
    "SUPPORTED_FORMS",
    "QdrantServerSpec",
    "default_local_root",
    "default_sink_uri",
    "open_sink",
    "parse_qdrant_uri",
    "validate_batch",
    "validate_collection_name",
]

#: the widest vector a Qdrant collection (server or embedded engine) accepts
QDRANT_MAX_DIM = 65536

#: where ``qdrant+local://COLLECTION`` (no path) and :func:`default_sink_uri` keep collections
DEFAULT_LOCAL_ROOT = "~/.drift/qdrant"

SUPPORTED_FORMS = (
    "qdrant+local://PATH/COLLECTION (embedded, default), qdrant://HOST:6333/COLLECTION, "
    "qdrants://HOST:6333/COLLECTION, qdrant+memory://COLLECTION, "
    "pgvector://USER:PASS@HOST:5432/DB/TABLE, postgresql://USER:PASS@HOST:5432/DB?table=TABLE"
)

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_local_root() -> Path:
    """Where embedded collections live by default: ``$DRIFT_HOME/qdrant``, else :data:`DEFAULT_LOCAL_ROOT`.

    Follows ``DRIFT_HOME`` like the ledger does, so one variable moves all of drift's local state.
    """
    home = os.environ.get("DRIFT_HOME")
    root = Path(home) / "qdrant" if home else Path(DEFAULT_LOCAL_ROOT)
    return root.expanduser().resolve()


def default_sink_uri(collection: str) -> str:
    """Return the embedded-sink URI of ``collection`` under :func:`default_local_root`."""
    validate_collection_name(collection)
    return f"qdrant+local://{default_local_root().as_posix()}/{collection}"


def open_sink(target: str | Sink, **options: Any) -> Sink:
    """Return a sink for ``target`` (a URI, or an already open sink passed through).

    Options are keyword arguments of the implementation (``batch_size``,
    ``lock_timeout``, ``api_key``, ``timeout``, ...); they override the same
    names given in the URI's query string.
    """
    if isinstance(target, Sink):
        return target
    if not isinstance(target, str) or "://" not in target:
        raise ConfigError(f"not a sink URI: {target!r}", hint=f"use one of: {SUPPORTED_FORMS}")
    scheme = target.split("://", 1)[0].lower()
    if scheme == "qdrant+local":
        from .qdrant_local import QdrantLocalSink

        return QdrantLocalSink.from_uri(target, **options)
    if scheme in ("qdrant", "qdrants", "qdrant+memory"):
        from .qdrant_server import QdrantServerSink

        return QdrantServerSink.from_uri(target, **options)
    if scheme in ("pgvector", "postgresql", "postgres"):
        from .pgvector import PgVectorSink  # type: ignore[import-not-found,unused-ignore]

        sink: Sink = PgVectorSink.from_uri(target, **options)
        return sink
    raise ConfigError(f"unknown sink scheme {scheme!r} in {target!r}", hint=f"use one of: {SUPPORTED_FORMS}")


def validate_collection_name(name: str, *, what: str = "collection") -> str:
    """Reject names that are not safe as a Qdrant collection and a directory name."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {what} name {name!r}",
            hint="use 1-255 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
        )
    return name


def check_dimension(dim: Any, *, maximum: int, store: str) -> int:
    """Return ``dim`` as an int if ``store`` can hold vectors that wide; raise ConfigError otherwise.

    Sinks call this before creating anything, so a typo such as ``--dim 100000000`` leaves no
    empty collection behind and never reaches the embedding provider.
    """
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 0 < int(dim) <= maximum:
        raise ConfigError(
            f"invalid vector dimension {dim!r} for {store}",
            hint=f"{store} holds vectors of 1 to {maximum:,} dimensions; check --dim / the model's size",
        )
    return int(dim)


def bool_option(value: Any, *, name: str) -> bool:
    """Parse a flag that may come from a URI query string or an Airflow extra (strings)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"option {name}={value!r} is not a boolean", hint="use true or false")


def number_option(value: Any, *, name: str, kind: type = int, minimum: float = 0) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"option {name}={value!r} is not a number", hint=f"give {name} as a {kind.__name__}"
        ) from None
    if (isinstance(number, float) and not math.isfinite(number)) or number < minimum:
        raise ConfigError(f"option {name}={value!r} is out of range", hint=f"use a value >= {minimum}")
    return number


def split_query(uri: str) -> tuple[str, dict[str, str]]:
    """Split ``uri`` into the part before ``?`` and its query parameters."""
    base, _, query = uri.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    return base, params


@dataclass(frozen=True)
class QdrantServerSpec:
    """A parsed ``qdrant://`` / ``qdrants://`` / ``qdrant+memory://`` URI."""

    mode: str  # "server" or "memory"
    collection: str
    host: str = ""
    port: int = 6333
    https: bool = False
    prefer_grpc: bool = False
    grpc_port: int = 6334
    prefix: str | None = None
    store: str = "default"
    options: tuple[tuple[str, str], ...] = ()

    @property
    def identity(self) -> str:
        """The credential-free, transport-free URI the ledger records."""
        if self.mode == "memory":
            suffix = "" if self.store == "default" else f"?store={self.store}"
            return f"qdrant+memory://{self.collection}{suffix}"
        suffix = f"?prefix={self.prefix}" if self.prefix else ""
        return f"qdrant://{self.host}:{self.port}/{self.collection}{suffix}"


_SERVER_KEYS = {"https", "grpc", "prefer_grpc", "grpc_port", "prefix", "store"}


def parse_qdrant_uri(uri: str) -> QdrantServerSpec:
    """Parse a Qdrant server or memory URI; reject credentials embedded in it."""
    base, params = split_query(uri)
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    extra = tuple((k, v) for k, v in params.items() if k not in _SERVER_KEYS)
    if scheme == "qdrant+memory":
        name = (parts.netloc + parts.path).strip("/")
        return QdrantServerSpec(
            mode="memory",
            collection=validate_collection_name(unquote(name)),
            store=params.get("store", "default") or "default",
            options=extra,
        )
    if parts.username or parts.password or "api_key" in params:
        raise ConfigError(
            f"the Qdrant URI {_redact(uri)} carries a credential",
            hint="pass api_key=... (or an Airflow qdrant connection's password) or set QDRANT_API_KEY; "
            "sink URIs are recorded in the ledger and must not hold secrets",
        )
    if not parts.hostname:
        raise ConfigError(f"no host in sink URI {uri!r}", hint="write qdrant://HOST:6333/COLLECTION")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 1:
        raise ConfigError(
            f"sink URI {uri!r} must name exactly one collection after the host",
            hint="write qdrant://HOST:6333/COLLECTION (a URL prefix goes in ?prefix=...)",
        )
    try:
        port = parts.port or 6333
    except ValueError:
        raise ConfigError(
            f"bad port in sink URI {uri!r}", hint="write qdrant://HOST:6333/COLLECTION"
        ) from None
    https = scheme == "qdrants" or bool_option(params.get("https", "false"), name="https")
    grpc = bool_option(params.get("grpc", params.get("prefer_grpc", "false")), name="grpc")
    prefix = params.get("prefix") or None
    return QdrantServerSpec(
        mode="server",
        collection=validate_collection_name(unquote(segments[0])),
        host=parts.hostname.lower(),
        port=port,
        https=https,
        prefer_grpc=grpc,
        grpc_port=number_option(params.get("grpc_port", 6334), name="grpc_port", minimum=1),
        prefix=prefix.strip("/") if prefix else None,
        options=extra,
    )


def parse_local_uri(uri: str) -> tuple[Path, str, dict[str, str]]:
    """Split ``qdrant+local://PATH/COLLECTION`` into (absolute root, collection, query options)."""
    base, params = split_query(uri)
    # Split on the literal '/' first and decode each component alone: a percent-encoded separator
    # (a%2F..%2Fx) is part of one name, never a path step, so it cannot lead outside the root.
    rest = base.split("://", 1)[1].rstrip("/")
    if not rest:
        raise ConfigError(f"no collection in sink URI {uri!r}", hint="write qdrant+local://PATH/COLLECTION")
    root_raw, _, name_raw = rest.rpartition("/")
    if not root_raw and rest.startswith("/"):
        raise ConfigError(
            f"no collection in sink URI {uri!r}", hint="write qdrant+local:///ABS/PATH/COLLECTION"
        )
    steps = [unquote(step) for step in root_raw.split("/")]
    if any("/" in step or "\\" in step for step in steps):
        raise ConfigError(
            f"sink URI {uri!r} has a percent-encoded path separator in its root folder",
            hint="write the root folder with plain '/' separators: qdrant+local:///ABS/PATH/COLLECTION",
        )
    root_text = "/".join(steps)
    root = Path(root_text).expanduser().resolve() if root_text else default_local_root()
    return root, validate_collection_name(unquote(name_raw)), params


def validate_batch(batch: PointBatch, *, dim: int, uri: str) -> np.ndarray:
    """Check a batch before anything is written; return its vectors as C-contiguous float32.

    Every sink calls this (or :func:`check_vectors` plus its own id parse)
    first, so a bad batch (wrong size, NaN/inf, ids that are not UUIDs) fails
    whole and leaves the sink untouched.
    """
    vectors = check_vectors(batch, dim=dim, uri=uri)
    try:
        for point in batch.ids:
            uuid.UUID(point)
    except (TypeError, ValueError, AttributeError):
        raise SinkError(
            f"point id {point!r} is not a UUID string; nothing of this batch was written to {uri}",
            hint="derive ids with identity.point_id(source, key)",
        ) from None
    return vectors


def check_vectors(batch: PointBatch, *, dim: int, uri: str) -> np.ndarray:
    """The shape, dimension and finiteness checks of :func:`validate_batch`; returns float32 vectors."""
    from ..errors import DimensionMismatchError

    vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
    n = len(batch.ids)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise SinkError(
            f"batch for {uri} has {n} ids but vectors of shape {tuple(vectors.shape)}",
            hint="pass one vector row per id",
        )
    if len(batch.payloads) != n:
        raise SinkError(
            f"batch for {uri} has {n} ids but {len(batch.payloads)} payloads", hint="pass one payload per id"
        )
    if vectors.shape[1] != dim:
        raise DimensionMismatchError(
            f"vectors of {vectors.shape[1]} dimensions cannot go into {uri}, which holds {dim}-d vectors",
            hint="use another collection for this model, or migrate the collection to it",
            expected=dim,
            actual=int(vectors.shape[1]),
        )
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise SinkError(
            f"{len(bad)} vector(s) contain NaN or inf (e.g. point {batch.ids[int(bad[0])]}); "
            f"nothing of this batch was written to {uri}",
            hint="check the embedding provider's output for those rows",
        )
    return vectors


def check_query_vector(vector: Any, *, dim: int, uri: str) -> list[float]:
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        from ..errors import DimensionMismatchError

        raise DimensionMismatchError(
            f"query vector has {query.shape[0]} dimensions but {uri} holds {dim}-d vectors",
            hint="embed the query with the collection's model",
            expected=dim,
            actual=int(query.shape[0]),
        )
    if not np.isfinite(query).all():
        raise SinkError("query vector contains NaN or inf", hint="check the embedding of the query")
    return [float(x) for x in query]


def check_ids(ids: Any, *, uri: str) -> list[str]:
    """Return ``ids`` as canonical UUID strings, or raise SinkError naming the bad one."""
    out = []
    for point in ids:
        try:
            out.append(str(uuid.UUID(str(point))))
        except ValueError:
            raise SinkError(
                f"point id {point!r} is not a UUID string ({uri})",
                hint="derive ids with identity.point_id(source, key)",
            ) from None
    return out


def env_api_key() -> str | None:
    return os.environ.get("QDRANT_API_KEY") or None


def _redact(uri: str) -> str:
    """``uri`` without its user info or query string (which may hold secrets); never raises."""
    base = uri.partition("?")[0]
    scheme, sep, rest = base.partition("://")
    if not sep:
        return "***"
    netloc, slash, path = rest.partition("/")
    hostport = netloc.rpartition("@")[2]
    return f"{scheme}://***@{hostport}{slash}{path}"

"""Content hashes and point ids: the identity rules every sink and run share.

A point id is a UUID of (source, key), so an update overwrites the same point
and a delete removes exactly that row's point; two rows with one text are two
points. The content hash of the text decides whether a row needs work. Both
schemes are versioned: changing either would orphan every stored vector, so a
new scheme gets a new version string. The ledger records, per sink, the
point-id scheme and the vector scheme (:func:`vector_scheme`) its points were
written with, and refuses a run with another (``Ledger.register_sink``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

HASH_SCHEME = "sha256-v1"
POINT_ID_SCHEME = "uuid5-v1"

# Fixed namespace for point ids; never change it (see POINT_ID_SCHEME).
_POINT_NAMESPACE = uuid.UUID("6b9d3c52-8f0e-5c1a-9d4e-2f7a1b3c4d5e")


def content_hash(text: str) -> str:
    """Return the hex SHA-256 of the UTF-8 text (exact bytes, no normalisation)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hashes(texts: Iterable[str]) -> list[str]:
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def content_digests(texts: Iterable[str]) -> np.ndarray:
    """The SHA-256 digests of many texts as one ``S32`` array (``hex_hashes`` gives the hex strings).

    Why bytes: a no-change re-run compares every row's hash and needs the hex
    string of none of them; digests cost a third less and compare in numpy.
    """
    sha256 = hashlib.sha256
    return np.array([sha256(t.encode("utf-8")).digest() for t in texts], dtype="S32")


def hex_hashes(digests: np.ndarray) -> list[str]:
    """The hex content hashes of ``content_digests`` output (the form the ledger and payloads keep)."""
    return _split(np.ascontiguousarray(digests).tobytes().hex(), 64)


def point_id(source: str, key: str) -> str:
    """Return the point id (UUID string) of row ``key`` of ``source``."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{source}\x1f{key}"))


def point_ids(source: str, keys: Iterable[str]) -> list[str]:
    """``point_id`` for many keys: the same UUIDv5 strings, without building UUID objects."""
    return format_point_ids(point_id_digests(source, keys))


def point_id_digests(source: str, keys: Iterable[str]) -> np.ndarray:
    """The 16 bytes of each key's point id (UUIDv5 of ``source`` and key) as one ``S16`` array."""
    sha1 = hashlib.sha1
    prefix = _POINT_NAMESPACE.bytes + f"{source}\x1f".encode()
    raw = b"".join([sha1(prefix + k.encode("utf-8"), usedforsecurity=False).digest() for k in keys])
    out = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 20)[:, :16].copy()
    out[:, 6] = (out[:, 6] & 0x0F) | 0x50  # version 5
    out[:, 8] = (out[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return out.view("S16").reshape(-1)


def format_point_ids(digests: np.ndarray) -> list[str]:
    """The canonical UUID strings (8-4-4-4-12 lowercase hex) of point-id digests."""
    n = len(digests)
    hexed = np.frombuffer(np.ascontiguousarray(digests).tobytes().hex().encode(), dtype=np.uint8)
    hexed = hexed.reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
        width = _UUID_GROUPS[src]
        out[:, dst : dst + width] = hexed[:, src : src + width]
    return _split(out.tobytes().decode("ascii"), 36)


def point_id_bytes(point_ids: Sequence[str]) -> np.ndarray:
    """The ``S16`` digests of UUID strings (the inverse of :func:`format_point_ids`)."""
    return np.frombuffer(bytes.fromhex("".join(point_ids).replace("-", "")), dtype="S16")


_UUID_GROUPS = {0: 8, 8: 4, 12: 4, 16: 4, 20: 12}


def _split(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)]


def key_to_str(value: object) -> str:
    """Render a source key as the canonical string used for point ids.

    Integers and strings are the common keys; ``7`` and ``"7"`` deliberately
    map to the same id so a column type change does not re-create every point.
    """
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def vector_scheme(provider: Any) -> str:
    """How a provider makes vectors: ``shadow-v<N>`` for shadow mode's recipe N, else ``provider``.

    Shadow vectors and a real model's vectors of the same model name are not
    comparable, nor are two shadow recipes: a sink holds one scheme only.
    """
    if getattr(provider, "is_shadow", False):
        from .providers.shadow import SHADOW_SCHEME

        return f"shadow-v{SHADOW_SCHEME}"
    return "provider"

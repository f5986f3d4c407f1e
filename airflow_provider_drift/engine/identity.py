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
from collections.abc import Iterable
from typing import Any

HASH_SCHEME = "sha256-v1"
POINT_ID_SCHEME = "uuid5-v1"

# Fixed namespace for point ids; never change it (see POINT_ID_SCHEME).
_POINT_NAMESPACE = uuid.UUID("6b9d3c52-8f0e-5c1a-9d4e-2f7a1b3c4d5e")


def content_hash(text: str) -> str:
    """Return the hex SHA-256 of the UTF-8 text (exact bytes, no normalisation)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hashes(texts: Iterable[str]) -> list[str]:
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def point_id(source: str, key: str) -> str:
    """Return the point id (UUID string) of row ``key`` of ``source``."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{source}\x1f{key}"))


def point_ids(source: str, keys: Iterable[str]) -> list[str]:
    """``point_id`` for many keys: the same UUIDv5 bytes, without building UUID objects."""
    out = []
    sha1 = hashlib.sha1
    prefix = _POINT_NAMESPACE.bytes + f"{source}\x1f".encode()
    for k in keys:
        d = bytearray(sha1(prefix + k.encode("utf-8"), usedforsecurity=False).digest()[:16])
        d[6] = (d[6] & 0x0F) | 0x50  # version 5
        d[8] = (d[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = d.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


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

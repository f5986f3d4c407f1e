"""Content hashes and point ids: the identity rules every sink and run share.

A point id is a UUID of (source, key), so an update overwrites the same point
and a delete removes exactly that row's point; two rows with one text are two
points. The content hash of the text decides whether a row needs work. Both
schemes are versioned: changing either would orphan every stored vector, so a
new scheme gets a new version string and the ledger records which was used.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

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
    prefix = f"{source}\x1f"
    ns = _POINT_NAMESPACE
    return [str(uuid.uuid5(ns, prefix + k)) for k in keys]


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

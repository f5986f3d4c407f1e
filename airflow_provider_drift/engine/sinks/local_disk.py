"""Room on a local disk, checked before an embedded store writes to it.

Why check instead of catching the failure: the embedded Qdrant engine
memory-maps its WAL and storage files, and a write into a mapped page the
filesystem cannot back is a SIGBUS — the process dies with no message and no
cleanup. So writes (and loads, which replay the WAL) go ahead only if the
disk has room for them plus a reserve, estimated generously.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StorageFullError

#: free bytes kept beyond a write's own: WAL segment headers and metadata an edge shard writes on open
DISK_RESERVE = 4 << 20
#: a point lands on disk about this many times: WAL entry, vector storage, payload storage
WRITE_COPIES = 3
#: per point, beyond its vector and payload: id tracker, versions, WAL framing
POINT_OVERHEAD = 128


def check_free_space(root: Path, needed: int, *, action: str) -> None:
    """Raise StorageFullError unless the disk under ``root`` has ``needed`` bytes plus the reserve."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return  # no root yet: creating it will say what is wrong
    want = needed + DISK_RESERVE
    if free < want:
        raise StorageFullError(
            f"not enough free disk space to {action}: {free / 2**20:.1f} MiB free, "
            f"about {want / 2**20:.1f} MiB needed",
            hint=f"free space on the disk of {root} (or move the collection to a larger one) and retry; "
            "nothing was written",
            free_bytes=free,
            needed_bytes=want,
        )


def wal_bytes(directory: Path) -> int:
    """Bytes a shard's write-ahead log really occupies (its segment files are sparse)."""
    try:
        return sum(f.stat().st_blocks * 512 for f in (directory / "wal").iterdir() if f.is_file())
    except OSError:
        return 0


def batch_bytes(vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> int:
    """About how many bytes writing these points adds to the disk (a generous estimate)."""
    sample = payloads[: min(len(payloads), 64)]
    per_payload = (sum(len(json.dumps(p, default=str)) for p in sample) / len(sample)) if sample else 0
    per_point = vectors.shape[1] * vectors.itemsize + per_payload + POINT_OVERHEAD
    return int(len(vectors) * per_point * WRITE_COPIES)

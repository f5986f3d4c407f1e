"""What the ledger knows about a sink, in the compact form executors compare rows against.

The ledger is a SQLite file on the driver, so executors cannot ask it. The
driver reads the sink's live provenance rows once and ships them:

* ``known`` — per point of this source: 16 bytes of point id, the first 16
  bytes of its content hash, and whether the row counts as current for this
  run (same model, no pending mark): the same index and test as the
  single-process planner's (:class:`..known_points.KnownPoints`).
* ``holders`` — per text already embedded with this model anywhere in the
  sink: hash prefix → a point holding it, so an executor copies that vector
  (after checking the point's payload, as :func:`..vectorize.vectorize` does)
  instead of paying again.

Two ways to ship ``known`` (``known_via``), measured in ``dev/bench/bench_spark.py``:
``"broadcast"`` sends the sorted arrays to every executor once (a Spark
broadcast variable; on Spark Connect inside the task closure) and the plan
step looks rows up with a binary search — no shuffle; ``"join"`` turns them
into a DataFrame and left-joins the planned rows on point id — a shuffle of
every row, but nothing per executor grows with the table. The default is
broadcast below :data:`BROADCAST_LIMIT` known points (32 bytes each), join above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ..identity import point_id_bytes
from ..known_points import KnownPoints
from ..ledger import Ledger

KnownVia = Literal["auto", "broadcast", "join"]

#: past this many known points (~32 bytes each: 64 MiB), ``auto`` joins instead of broadcasting
BROADCAST_LIMIT = 2_000_000

STATE_CURRENT = "current"
STATE_NEW = "new"
STATE_UPDATE = "update"


def hash_prefix(content_hash: str) -> bytes:
    return bytes.fromhex(content_hash[:32])


@dataclass
class LedgerView:
    """The sink's live provenance as arrays: ``known`` for this source, ``holders`` for this model."""

    ids: np.ndarray  # S16 (KnownPoints.of sorts them for look-ups)
    hashes: np.ndarray  # S16, aligned with ids
    current_ok: np.ndarray  # bool, aligned with ids
    holder_hashes: np.ndarray  # S16, distinct
    holder_ids: list[str]

    @property
    def n_known(self) -> int:
        return len(self.ids)

    def index(self) -> KnownPoints:
        return KnownPoints.of(self.ids, self.hashes, self.current_ok)

    def known_table(self) -> pa.Table:
        return pa.table(
            {
                "k_pid": fixed16(self.ids),
                "k_hash": fixed16(self.hashes),
                "k_ok": pa.array(self.current_ok),
            }
        )

    def holders_table(self) -> pa.Table:
        return pa.table(
            {
                "h_hash": fixed16(self.holder_hashes),
                "holder": pa.array(self.holder_ids, pa.string()),
            }
        )


def read_ledger(ledger: Ledger, *, sink: str, source: str, model: str) -> LedgerView:
    """Read the sink's live points (chunked by point id: the driver never holds SQLite rows in bulk)."""
    ids: list[str] = []
    hashes: list[bytes] = []
    ok: list[bool] = []
    holders: dict[bytes, str] = {}
    for chunk in ledger.live_points(sink):
        for r in chunk:
            usable = r["model"] == model and r["pending_run"] is None
            prefix = hash_prefix(r["content_hash"] or "0" * 32)
            if r["source"] == source:
                ids.append(r["point_id"])
                hashes.append(prefix)
                ok.append(usable)
            if usable and r["content_hash"]:
                holders.setdefault(prefix, r["point_id"])
    return LedgerView(
        ids=point_id_bytes(ids) if ids else np.empty(0, dtype="S16"),
        hashes=np.array(hashes, dtype="S16"),
        current_ok=np.array(ok, dtype=bool),
        holder_hashes=np.array(list(holders), dtype="S16"),
        holder_ids=list(holders.values()),
    )


def states(known: KnownPoints, id_digests: np.ndarray, hash_digests: np.ndarray) -> list[str]:
    """Per row: ``current`` (holds this text, this model), ``update`` (known otherwise) or ``new``."""
    found, current = known.match(id_digests, hash_digests)
    out = np.where(current, STATE_CURRENT, np.where(found, STATE_UPDATE, STATE_NEW))
    return out.tolist()  # type: ignore[no-any-return]


def fixed16(values: np.ndarray) -> pa.Array:
    """An Arrow binary array of an ``S16`` array (whose ``tolist()`` would strip trailing zero bytes)."""
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(values), [None, pa.py_buffer(np.ascontiguousarray(values).tobytes())]
    )
    return fixed.cast(pa.binary())  # Spark has no fixed-size binary type


def resolve_known_via(known_via: KnownVia, n_known: int) -> Literal["broadcast", "join"]:
    if known_via == "auto":
        return "broadcast" if n_known <= BROADCAST_LIMIT else "join"
    return known_via


def to_spark(spark: Any, table: pa.Table) -> Any:
    """A Spark DataFrame of an Arrow table (an empty one keeps its schema)."""
    return spark.createDataFrame(table)

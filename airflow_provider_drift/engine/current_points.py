"""What a sink already holds, current, for one source and model: the no-change test of a large run.

A re-run of an unchanged table asks, for every row, "does the sink hold this
text under this model?". Asked of the ledger batch by batch, that is an index
probe and a table row per row (~4 µs on SQLite with the pages cached, a round
trip of every batch on PostgreSQL). Read once up front — the source's live,
unmarked points of this model, 32 bytes each — it is a binary search in
numpy, and the ledger is read sequentially, about a microsecond per point.

The read pays off only when the run's input is a fair share of what the sink
holds for the source, so it is bounded: past ``limit`` points it stops and the
run keeps the per-batch look-ups (a small filtered run into a large sink).

Like the per-batch look-ups, this is the ledger as of the read: a concurrent
run that changes a point afterwards is seen as a look-up a moment earlier
would see it. Hashes compare on their first 128 bits (as the Spark runner's
view does): two texts sharing a 128-bit SHA-256 prefix are not a practical
concern.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .ledger import Ledger

log = logging.getLogger(__name__)

#: read the view when the sink's known points of the source are at most this many per input row
VIEW_POINTS_PER_ROW = 4


@dataclass(frozen=True)
class CurrentPoints:
    """The current points' ids and 128-bit hash prefixes, as pairs of 64-bit words, sorted by the
    ids' first word (a binary search on integers; comparing 16-byte strings is ~10x slower)."""

    ids: np.ndarray  # (n, 2) uint64, sorted by column 0
    hashes: np.ndarray  # (n, 2) uint64, aligned with ids
    first: np.ndarray  # ids[:, 0], contiguous for searchsorted

    @classmethod
    def read(cls, ledger: Ledger, *, sink: str, source: str, model: str, limit: int) -> CurrentPoints | None:
        """The view, or None when the sink holds more than ``limit`` such points."""
        try:
            got = ledger.current_points(sink, source=source, model=model, limit=limit)
        except ValueError as exc:  # a point id that is not a UUID string: the look-ups still work
            log.debug("no current-points view of %s: %s", sink, exc)
            return None
        if got is None:
            return None
        ids, hashes = words(got[0]), words(got[1])
        order = np.argsort(ids[:, 0], kind="stable")
        ids, hashes = ids[order], hashes[order]
        return cls(ids, hashes, np.ascontiguousarray(ids[:, 0]))

    def __len__(self) -> int:
        return len(self.ids)

    def stale(self, id_digests: np.ndarray, hash_digests: np.ndarray) -> list[int]:
        """Positions of the rows whose point the sink does not hold current with the row's text.

        Two known ids sharing a first word (~1 in 10^7 at 10^6 points) only make the second one
        look stale: it is rewritten, never wrongly skipped.
        """
        if not len(self.ids):
            return list(range(len(id_digests)))
        want = words(id_digests)
        pos = np.searchsorted(self.first, want[:, 0])
        np.minimum(pos, len(self.first) - 1, out=pos)
        same_id = (self.ids[pos] == want).all(axis=1)
        same_text = (self.hashes[pos] == words(hash_prefixes(hash_digests))).all(axis=1)
        return np.flatnonzero(~(same_id & same_text)).tolist()  # type: ignore[no-any-return]


def words(digests: np.ndarray) -> np.ndarray:
    """``S16`` digests as (n, 2) uint64 words."""
    return np.ascontiguousarray(digests).view(np.uint64).reshape(-1, 2)


def hash_prefixes(digests: np.ndarray) -> np.ndarray:
    """The first 16 bytes of ``S32`` content digests, as ``S16``."""
    raw = np.ascontiguousarray(digests).view(np.uint8).reshape(-1, 32)
    return np.ascontiguousarray(raw[:, :16]).view("S16").reshape(-1)

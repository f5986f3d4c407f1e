"""What a sink already holds for one source and model, read once: the no-change test of a large run.

A re-run of an unchanged table asks, for every row, "does the sink hold this
text under this model?". Asked of the ledger batch by batch, that is an index
probe and a table row per row (~8 µs a row on SQLite at 1M points, a round
trip of every batch on PostgreSQL). Read once up front — the source's live,
unmarked points of this model, 32 bytes each — it is a binary search in
numpy, and the ledger is read sequentially, about a microsecond per point.

The read pays off only when the run's input is a fair share of what the sink
holds for the source, so it is bounded: past ``limit`` points it stops and the
run keeps the per-batch look-ups (a small filtered run into a large sink).

The Spark runner ships the same index to its executors (with every known
point and an ``ok`` flag, see spark/known.py).

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
class KnownPoints:
    """Points the ledger knows, as sorted 64-bit words: the no-change test of a large run.

    ``ids`` and ``hashes`` are (n, 2) uint64 words of the point-id digests and the 128-bit hash
    prefixes, sorted by the ids' first word (a binary search on integers; comparing 16-byte strings
    is ~10x slower). ``ok`` marks the points that count as current (this model, no pending mark);
    None means all do (:meth:`read` keeps only those).
    """

    ids: np.ndarray
    hashes: np.ndarray
    first: np.ndarray  # ids[:, 0], contiguous for searchsorted
    ok: np.ndarray | None = None

    @classmethod
    def of(cls, ids: np.ndarray, hashes: np.ndarray, ok: np.ndarray | None = None) -> KnownPoints:
        """From ``S16`` id digests and hash prefixes (any order), with their ``ok`` flags."""
        id_words, hash_words = words(ids), words(hashes)
        order = np.argsort(id_words[:, 0], kind="stable")
        id_words, hash_words = id_words[order], hash_words[order]
        return cls(
            id_words, hash_words, np.ascontiguousarray(id_words[:, 0]), None if ok is None else ok[order]
        )

    @classmethod
    def read(cls, ledger: Ledger, *, sink: str, source: str, model: str, limit: int) -> KnownPoints | None:
        """The points of ``source`` that ``sink`` holds current under ``model``; None past ``limit``."""
        try:
            got = ledger.current_points(sink, source=source, model=model, limit=limit)
        except ValueError as exc:  # a point id that is not a UUID string: the look-ups still work
            log.debug("no current-points view of %s: %s", sink, exc)
            return None
        return None if got is None else cls.of(*got)

    def __len__(self) -> int:
        return len(self.ids)

    def match(self, id_digests: np.ndarray, hash_digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row (``S16`` id digests, ``S32`` content digests): whether the point is known, and
        whether it is current with the row's text.

        Two known ids sharing a first word (~1 in 10^7 at 10^6 points) only make the second one
        look unknown: it is rewritten, never wrongly skipped.
        """
        if not len(self.ids):
            none = np.zeros(len(id_digests), dtype=bool)
            return none, none
        want = words(id_digests)
        pos = np.searchsorted(self.first, want[:, 0])
        np.minimum(pos, len(self.first) - 1, out=pos)
        found = (self.ids[pos] == want).all(axis=1)
        current = found & (self.hashes[pos] == words(hash_prefixes(hash_digests))).all(axis=1)
        if self.ok is not None:
            current &= self.ok[pos]
        return found, current

    def stale(self, id_digests: np.ndarray, hash_digests: np.ndarray) -> list[int]:
        """Positions of the rows whose point the sink does not hold current with the row's text."""
        _, current = self.match(id_digests, hash_digests)
        return np.flatnonzero(~current).tolist()  # type: ignore[no-any-return]


def words(digests: np.ndarray) -> np.ndarray:
    """``S16`` digests as (n, 2) uint64 words."""
    return np.ascontiguousarray(digests).view(np.uint64).reshape(-1, 2)


def hash_prefixes(digests: np.ndarray) -> np.ndarray:
    """The first 16 bytes of ``S32`` content digests, as ``S16``."""
    raw = np.ascontiguousarray(digests).view(np.uint8).reshape(-1, 32)
    return np.ascontiguousarray(raw[:, :16]).view("S16").reshape(-1)

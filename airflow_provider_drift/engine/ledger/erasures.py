"""Deletions the ledger must remember: erasures with proof, tombstones, and per-key source versions.

The per-key ``source_version`` is the version guard of ``watch``: a change
older than (or as old as) what the ledger says a point reflects is never
applied. That only works if the ledger also remembers keys that are *gone*
(a tombstone for a delete of a key it never held, so replaying an older
insert cannot resurrect it) and keys whose text did not change (their
version still moves forward).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..identity import HASH_SCHEME
from .base import LedgerPart, from_json, to_json, utc_now
from .vectors import Upsert


class ErasuresPart(LedgerPart):
    def record_tombstones(self, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """Record each point deleted as of its ``source_version``, including points it never held.

        A never-held point gets a tombstone row, so replaying an older insert
        of its key cannot resurrect it. A row the ledger holds at a newer
        version is left alone.
        """
        if not rows:
            return
        now = utc_now()
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
                " run_id, source_version, created_at, updated_at, deleted_at, deleted_run_id,"
                " deleted_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (sink, point_id) DO UPDATE"
                " SET deleted_at=COALESCE(vectors.deleted_at, excluded.deleted_at),"
                " deleted_run_id=COALESCE(vectors.deleted_run_id, excluded.deleted_run_id),"
                " deleted_version=excluded.deleted_version, source_version=excluded.source_version,"
                " updated_at=excluded.updated_at, pending_run=NULL"
                " WHERE vectors.source_version IS NULL OR vectors.source_version < excluded.source_version",
                [
                    (
                        sink,
                        r.point_id,
                        r.source,
                        r.key,
                        r.content_hash,
                        HASH_SCHEME,
                        model,
                        run_id,
                        r.source_version,
                        now,
                        now,
                        now,
                        run_id,
                        r.source_version,
                    )
                    for r in rows
                ],
            )

    def advance_versions(self, sink: str, versions: Sequence[tuple[str, int]]) -> None:
        """Move points' source version forward (never back): their text is current as of that version."""
        if not versions:
            return
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE vectors SET source_version=? WHERE sink=? AND point_id=?"
                " AND (source_version IS NULL OR source_version < ?)",
                [(int(v), sink, p, int(v)) for p, v in versions],
            )

    def advance_source_versions(self, sink: str, source: str, version: int) -> int:
        """Mark every point of ``source`` (live or gone) current as of ``version``, after a full sync.

        Returns the number of provenance rows moved forward.
        """
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE vectors SET source_version=? WHERE sink=? AND source=?"
                " AND (source_version IS NULL OR source_version < ?)",
                (version, sink, source, version),
            )
            return int(cur.rowcount)

    def record_erasure(
        self,
        *,
        source: str,
        key: str,
        sink: str,
        point_id: str,
        requested_at: str,
        verified: bool,
        proof: dict[str, Any],
    ) -> str:
        """Store one sink's erasure of a key with the evidence that the sink no longer returns it."""
        erasure_id = uuid.uuid4().hex
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO erasures (erasure_id, source, source_key, sink, point_id, requested_at,"
                " verified_at, verified, proof) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    erasure_id,
                    source,
                    key,
                    sink,
                    point_id,
                    requested_at,
                    utc_now() if verified else None,
                    1 if verified else 0,
                    to_json(proof),
                ),
            )
        return erasure_id

    def erasures_for_key(self, source: str, key: str) -> list[dict[str, Any]]:
        """Every erasure recorded for one source key, oldest first, with its proof decoded."""
        rows = self._db.query(
            "SELECT * FROM erasures WHERE source=? AND source_key=? ORDER BY requested_at, sink",
            (source, key),
        )
        out = []
        for r in rows:
            item = dict(r)
            item["verified"] = bool(item["verified"])
            item["proof"] = from_json(item["proof"])
            out.append(item)
        return out

"""Per-vector provenance: which point in which sink holds which text, from which run.

Lookups take a whole batch of ids in one statement (``json_each`` of one
parameter) so a million-row re-run costs a thousand queries, not a million.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..identity import HASH_SCHEME
from .base import LedgerPart, utc_now


@dataclass(frozen=True)
class VectorState:
    """What the ledger believes a sink holds for one point id."""

    content_hash: str
    model: str
    source_version: int | None
    deleted: bool


@dataclass(frozen=True)
class Upsert:
    """One provenance row to record after the sink accepted the point."""

    point_id: str
    source: str
    key: str
    content_hash: str
    source_version: int | None = None


class VectorsPart(LedgerPart):
    def lookup(self, sink: str, point_ids: Sequence[str]) -> dict[str, VectorState]:
        """States of the given points in ``sink`` (deleted ones included, marked)."""
        if not point_ids:
            return {}
        rows = self._db.query(
            "SELECT point_id, content_hash, model, source_version, deleted_at FROM vectors"
            " WHERE sink=? AND point_id IN (SELECT value FROM json_each(?))",
            (sink, json.dumps(list(point_ids))),
        )
        return {
            r["point_id"]: VectorState(
                r["content_hash"], r["model"], r["source_version"], r["deleted_at"] is not None
            )
            for r in rows
        }

    def stale_positions(
        self, sink: str, model: str, point_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[int]:
        """Positions of the points ``sink`` does not hold with this text under this model.

        The comparison runs inside SQLite (one statement per batch, only the
        rows needing work come back) because a no-change re-run is exactly
        this query over every row: it must cost microseconds per row, not a
        Python object per row.
        """
        if not point_ids:
            return []
        rows = self._db.query(
            "SELECT CAST(j.key AS INTEGER) FROM json_each(?) AS j LEFT JOIN vectors AS v"
            " ON v.point_id = j.value ->> 0 AND v.sink = ? AND v.content_hash = j.value ->> 1"
            " AND v.model = ? AND v.deleted_at IS NULL WHERE v.rowid IS NULL ORDER BY j.key",
            (json.dumps(list(zip(point_ids, hashes, strict=True))), sink, model),
        )
        return [r[0] for r in rows]

    def find_embedded(self, model: str, hashes: Sequence[str], *, sink: str) -> dict[str, str]:
        """Live points in ``sink`` that already hold a vector of each text under ``model``.

        Returns content hash → point id, so the caller can copy the vector
        instead of paying the provider again.
        """
        if not hashes:
            return {}
        wanted = json.dumps(list(hashes))
        rows = self._db.query(  # the prefix term is what vectors_by_text indexes (schema v2)
            "SELECT content_hash, MIN(point_id) AS point_id FROM vectors"
            " WHERE substr(content_hash, 1, 16) IN (SELECT substr(value, 1, 16) FROM json_each(?1))"
            " AND deleted_at IS NULL AND content_hash IN (SELECT value FROM json_each(?1))"
            " AND model=?2 AND sink=?3 GROUP BY content_hash",
            (wanted, model, sink),
        )
        return {r["content_hash"]: r["point_id"] for r in rows}

    def record_upserts(self, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """Record points the sink has accepted; a previously deleted point comes back to life."""
        if not rows:
            return
        now = utc_now()
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
                " run_id, source_version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                # source and key are not updated: the point id is derived from them, so they cannot
                # differ, and rewriting them would rewrite every vectors_by_key entry (~25% slower).
                " ON CONFLICT (point_id, sink) DO UPDATE SET content_hash=excluded.content_hash,"
                " hash_scheme=excluded.hash_scheme, model=excluded.model, run_id=excluded.run_id,"
                " source_version=excluded.source_version, updated_at=excluded.updated_at,"
                " deleted_at=NULL, deleted_run_id=NULL, deleted_version=NULL",
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
                    )
                    for r in rows
                ],
            )

    def record_deletes(
        self, sink: str, point_ids: Sequence[str], *, run_id: str, source_version: int | None = None
    ) -> None:
        """Mark points deleted (kept for audit) so a re-inserted text is embedded again."""
        if not point_ids:
            return
        now = utc_now()
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE vectors SET deleted_at=?, deleted_run_id=?, deleted_version=?, source_version="
                " COALESCE(?, source_version) WHERE sink=? AND point_id=? AND deleted_at IS NULL",
                [(now, run_id, source_version, source_version, sink, pid) for pid in point_ids],
            )

    def register_sink(self, sink: str, *, model: str, dim: int, distance: str) -> None:
        now = utc_now()
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO sinks (sink, model, dim, distance, created_at, updated_at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (sink) DO UPDATE SET model=excluded.model, dim=excluded.dim,"
                " distance=excluded.distance, updated_at=excluded.updated_at",
                (sink, model, dim, distance, now, now),
            )

    def known_sinks(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.query("SELECT * FROM sinks ORDER BY sink")]

    def sink_info(self, sink: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT * FROM sinks WHERE sink=?", (sink,))
        return dict(rows[0]) if rows else None

    def live_count(self, sink: str) -> int:
        rows = self._db.query(
            "SELECT COUNT(*) AS n FROM vectors WHERE sink=? AND deleted_at IS NULL", (sink,)
        )
        return int(rows[0]["n"])

    def models_in_sink(self, sink: str) -> dict[str, int]:
        rows = self._db.query(
            "SELECT model, COUNT(*) AS n FROM vectors WHERE sink=? AND deleted_at IS NULL GROUP BY model",
            (sink,),
        )
        return {r["model"]: int(r["n"]) for r in rows}

    def live_points(
        self, sink: str, *, source: str | None = None, chunk: int = 5000
    ) -> Iterator[list[dict[str, Any]]]:
        """Live provenance rows of a sink (optionally one source), in chunks ordered by point id."""
        after = ""
        while True:
            params: tuple[Any, ...] = (sink, after) + ((source,) if source else ()) + (chunk,)
            rows = self._db.query(
                "SELECT point_id, source, source_key, content_hash, model, source_version FROM vectors"
                " WHERE sink=? AND deleted_at IS NULL AND point_id > ?"
                + (" AND source=?" if source else "")
                + " ORDER BY point_id LIMIT ?",
                params,
            )
            if not rows:
                return
            yield [dict(r) for r in rows]
            after = rows[-1]["point_id"]

    def points_for_key(self, source: str, key: str) -> list[dict[str, Any]]:
        """Every sink's provenance row for one source key, live or deleted."""
        return [
            dict(r)
            for r in self._db.query(
                "SELECT * FROM vectors WHERE source=? AND source_key=? ORDER BY sink", (source, key)
            )
        ]

    # --- the set of points one full pass has seen, for pruning rows gone from the source ---

    def mark_seen(self, point_ids: Sequence[str]) -> None:
        """Remember ids seen by the current full pass (a temp table: bounded memory, no main-db lock)."""
        with self._db._lock:
            conn = self._db._conn
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS seen_points (point_id TEXT PRIMARY KEY) WITHOUT ROWID"
            )
            conn.execute("BEGIN")
            conn.executemany("INSERT OR IGNORE INTO temp.seen_points VALUES (?)", [(p,) for p in point_ids])
            conn.execute("COMMIT")

    def unseen_points(self, sink: str, source: str, *, chunk: int = 5000) -> Iterator[list[str]]:
        """Live points of (sink, source) the current pass did not see."""
        with self._db._lock:
            self._db._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS seen_points (point_id TEXT PRIMARY KEY) WITHOUT ROWID"
            )
        rows = self._db.query(
            "SELECT point_id FROM vectors WHERE sink=? AND source=? AND deleted_at IS NULL"
            " AND point_id NOT IN (SELECT point_id FROM temp.seen_points)",
            (sink, source),
        )
        ids = [r["point_id"] for r in rows]
        for i in range(0, len(ids), chunk):
            yield ids[i : i + chunk]

    def clear_seen(self) -> None:
        with self._db._lock:
            self._db._conn.execute("DROP TABLE IF EXISTS temp.seen_points")

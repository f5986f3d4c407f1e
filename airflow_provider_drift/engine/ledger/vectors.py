"""Per-vector provenance: which point in which sink holds which text, from which run.

Lookups take a whole batch of ids in one statement (``json_each`` of one
parameter) so a million-row re-run costs a thousand queries, not a million.

A row with ``pending_run`` set is one the ledger no longer vouches for: a
run was about to overwrite or delete the point in the sink when it set the
mark (see ``writer.py``). Such a point is stale to every planner, never a
vector to reuse, and is settled against the sink's payload once its run is
over (:meth:`VectorsPart.settle`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..identity import HASH_SCHEME, POINT_ID_SCHEME
from .base import LedgerPart, utc_now

#: chars of a point id (UUID) followed by a 32-hex-digit hash prefix, as the views are read
_PAIR = 36 + 32
_VIEW_CHUNK = 100_000
#: pads a hash shorter than 32 digits (never written by drift) so every record keeps its width
_PAD = "0" * 32

#: what a sink holds for a point, as its payload says: (content hash, model), or None if absent
Observed = tuple[str | None, str | None] | None


@dataclass(frozen=True)
class VectorState:
    """What the ledger believes a sink holds for one point id."""

    content_hash: str
    model: str
    source_version: int | None
    deleted: bool
    #: a run set out to overwrite or delete the point and may have: content_hash is not to be trusted
    pending: bool = False


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
            "SELECT point_id, content_hash, model, source_version, deleted_at, pending_run FROM vectors"
            " WHERE sink=? AND point_id IN (SELECT value FROM json_each(?))",
            (sink, json.dumps(list(point_ids))),
        )
        return vector_states(rows)

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
            " AND v.model = ? AND v.deleted_at IS NULL AND v.pending_run IS NULL WHERE v.rowid IS NULL"
            " ORDER BY j.key",
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
            " AND deleted_at IS NULL AND pending_run IS NULL"
            " AND content_hash IN (SELECT value FROM json_each(?1))"
            " AND model=?2 AND sink=?3 GROUP BY content_hash",
            (wanted, model, sink),
        )
        return {r["content_hash"]: r["point_id"] for r in rows}

    def record_upserts(self, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """Record points the sink has accepted; a previously deleted point comes back to life."""
        if not rows:
            return
        with self._db.write() as conn:
            self._record_upserts(conn, sink, rows, model=model, run_id=run_id)

    @staticmethod
    def _record_upserts(conn: Any, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """The statement of :meth:`record_upserts`, on a write connection of either backend."""
        now = utc_now()
        conn.executemany(
            "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
            " run_id, source_version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            # source and key are not updated: the point id is derived from them, so they cannot
            # differ, and rewriting them would rewrite every vectors_by_key entry (~25% slower).
            " ON CONFLICT (point_id, sink) DO UPDATE SET content_hash=excluded.content_hash,"
            " hash_scheme=excluded.hash_scheme, model=excluded.model, run_id=excluded.run_id,"
            " source_version=excluded.source_version, updated_at=excluded.updated_at,"
            " deleted_at=NULL, deleted_run_id=NULL, deleted_version=NULL, pending_run=NULL",
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
                " COALESCE(?, source_version), pending_run=NULL WHERE sink=? AND point_id=?"
                " AND deleted_at IS NULL",
                [(now, run_id, source_version, source_version, sink, pid) for pid in point_ids],
            )

    def register_sink(
        self, sink: str, *, model: str, dim: int, distance: str, vector_scheme: str | None = None
    ) -> None:
        """Record the sink and how its points are made; refuse a run whose schemes differ.

        Point ids of another scheme would address other points (every text
        embedded twice, deletes missing their points); vectors of another
        scheme (shadow vs. a real provider, or another shadow recipe) would
        sit beside vectors they cannot be compared with. A scheme not yet
        recorded (a sink from an older ledger) is filled in.
        """
        now = utc_now()
        with self._db.write() as conn:
            conn.lock("sink", sink)  # two first runs into one sink: one records the schemes, one is checked
            row = conn.execute(
                "SELECT point_id_scheme, vector_scheme FROM sinks WHERE sink=?", (sink,)
            ).fetchone()
            if row is not None:
                for what, recorded, wanted in (
                    ("point-id", row["point_id_scheme"], POINT_ID_SCHEME),
                    ("vector", row["vector_scheme"], vector_scheme),
                ):
                    if recorded is not None and wanted is not None and recorded != wanted:
                        raise SchemeMismatchError(
                            f"{sink} holds points of {what} scheme {recorded!r}; this run makes {wanted!r}",
                            hint="write to another collection (or migrate this one); mixing schemes "
                            "leaves vectors that cannot be compared or ids that miss their points"
                            + (" — shadow_mode must match how the collection was built" if what == "vector"
                               else ""),
                        )  # fmt: skip
            conn.execute(
                "INSERT INTO sinks (sink, model, dim, distance, created_at, updated_at, point_id_scheme,"
                " vector_scheme) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (sink) DO UPDATE SET model=excluded.model, dim=excluded.dim,"
                " distance=excluded.distance, updated_at=excluded.updated_at,"
                " point_id_scheme=COALESCE(sinks.point_id_scheme, excluded.point_id_scheme),"
                " vector_scheme=COALESCE(sinks.vector_scheme, excluded.vector_scheme)",
                (sink, model, dim, distance, now, now, POINT_ID_SCHEME, vector_scheme),
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
                "SELECT point_id, source, source_key, content_hash, model, source_version, pending_run"
                " FROM vectors WHERE sink=? AND deleted_at IS NULL AND point_id > ?"
                + (" AND source=?" if source else "")
                + " ORDER BY point_id LIMIT ?",
                params,
            )
            if not rows:
                return
            yield [dict(r) for r in rows]
            after = rows[-1]["point_id"]

    def current_points(
        self, sink: str, *, source: str, model: str, limit: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Point-id digests (``S16``) and 128-bit content-hash prefixes (``S16``) of the points of
        ``source`` that ``sink`` holds current under ``model`` (live, no pending mark), or None when
        there are more than ``limit``.

        Read in chunks, each concatenated into one string by the database, so no Python object
        is made per point.
        """
        ids: list[np.ndarray] = []
        prefixes: list[np.ndarray] = []
        n, after = 0, self._VIEW_START
        while True:
            last, count, text = self._view_chunk(sink, source, model, after)
            if not count:
                break
            n += count
            if n > limit:
                return None
            chunk_ids, chunk_prefixes = id_hash_pairs(text.encode("ascii"), width=_PAIR)
            ids.append(chunk_ids)
            prefixes.append(chunk_prefixes)
            after = last
        return _concat(ids), _concat(prefixes)

    _VIEW_START: Any = 0

    def _view_chunk(self, sink: str, source: str, model: str, after: Any) -> tuple[Any, int, str]:
        """(where the chunk ended, its count, its records concatenated) of the chunk after ``after``.

        In rowid order: a sequential pass over the table (the ``+`` keeps SQLite off the indexes).
        """
        row = self._db.query(
            "SELECT max(r), count(*), group_concat(x, '') FROM (SELECT rowid AS r,"
            " point_id || substr(content_hash || ?, 1, 32) AS x FROM vectors WHERE rowid > ? AND +sink = ?"
            " AND +source = ? AND +model = ? AND deleted_at IS NULL AND pending_run IS NULL"
            " ORDER BY rowid LIMIT ?)",
            (_PAD, after, sink, source, model, _VIEW_CHUNK),
        )[0]
        return row[0], row[1], row[2]

    # --- marks set before a sink write, settled after (crash consistency, see writer.py) ---------

    def mark_pending(
        self,
        sink: str,
        point_ids: Sequence[str],
        *,
        run_id: str,
        hashes: Sequence[str] | None = None,
        model: str | None = None,
    ) -> int:
        """Before the sink overwrites (``hashes``/``model`` given) or deletes (not given) these points,
        mark those the ledger records as live with another text or model; return how many.

        A read decides first, so a batch of new points (the common case of a
        fresh embed) costs one indexed query and no write transaction.
        """
        if not point_ids:
            return 0
        found = self._pending_candidates(sink, point_ids, run_id=run_id, hashes=hashes, model=model)
        if not found:
            return 0
        with self._db.write() as conn:
            self._set_pending(conn, sink, found, run_id=run_id)
        return len(found)

    @staticmethod
    def _set_pending(conn: Any, sink: str, point_ids: Sequence[str], *, run_id: str) -> None:
        """Mark live points as pending, in one statement for the whole batch."""
        conn.execute(
            "UPDATE vectors SET pending_run=? WHERE sink=? AND deleted_at IS NULL"
            " AND point_id IN (SELECT value FROM json_each(?))",
            (run_id, sink, json.dumps(list(point_ids))),
        )

    def _pending_candidates(
        self,
        sink: str,
        point_ids: Sequence[str],
        *,
        run_id: str,
        hashes: Sequence[str] | None,
        model: str | None,
    ) -> list[str]:
        """The points of ``mark_pending`` the ledger records as live with another text or model."""
        if hashes is None:
            found = self._db.query(
                "SELECT v.point_id FROM json_each(?) AS j JOIN vectors AS v ON v.point_id = j.value"
                " AND v.sink = ? WHERE v.deleted_at IS NULL AND v.pending_run IS NOT ?",
                (json.dumps(list(point_ids)), sink, run_id),
            )
        else:
            found = self._db.query(
                "SELECT v.point_id FROM json_each(?1) AS j JOIN vectors AS v ON v.point_id = j.value ->> 0"
                " AND v.sink = ?2 WHERE v.deleted_at IS NULL AND v.pending_run IS NOT ?3"
                " AND (v.content_hash != j.value ->> 1 OR v.model != ?4 OR v.pending_run IS NOT NULL)",
                (json.dumps(list(zip(point_ids, hashes, strict=True))), sink, run_id, model),
            )
        return [r[0] for r in found]

    def unsettled(self, sink: str, *, chunk: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Marked points whose run is over (finished, failed or abandoned), in chunks by point id."""
        after = ""
        while True:
            rows = self._db.query(
                "SELECT v.point_id, v.pending_run, v.content_hash, v.model FROM vectors AS v"
                " WHERE v.sink=? AND v.pending_run IS NOT NULL AND v.point_id > ? AND NOT EXISTS"
                " (SELECT 1 FROM runs AS r WHERE r.run_id = v.pending_run AND r.status = 'running')"
                " ORDER BY v.point_id LIMIT ?",
                (sink, after, chunk),
            )
            if not rows:
                return
            yield [dict(r) for r in rows]
            after = rows[-1]["point_id"]

    def settle(self, sink: str, observed: dict[str, Observed], *, run_id: str | None = None) -> int:
        """Make the ledger say what the sink holds for these points (its payload's hash and model).

        A point the sink does not hold becomes deleted; the others take the
        payload's hash and model and lose any mark. Rows marked by a run that
        is still running are left alone: its write may land after our read.
        Returns the number of rows changed.
        """
        if not observed:
            return 0
        now = utc_now()
        idle = (
            " AND (pending_run IS NULL OR NOT EXISTS (SELECT 1 FROM runs AS r"
            " WHERE r.run_id = vectors.pending_run AND r.status = 'running'))"
        )
        n = 0
        with self._db.write() as conn:
            for pid, seen in observed.items():
                if seen is None:
                    cur = conn.execute(
                        "UPDATE vectors SET deleted_at=?, deleted_run_id=COALESCE(pending_run, ?),"
                        " pending_run=NULL, updated_at=? WHERE sink=? AND point_id=? AND deleted_at IS NULL"
                        + idle,
                        (now, run_id, now, sink, pid),
                    )
                else:
                    cur = conn.execute(
                        "UPDATE vectors SET content_hash=?, model=?, pending_run=NULL, updated_at=?"
                        " WHERE sink=? AND point_id=? AND deleted_at IS NULL"
                        " AND (content_hash IS NOT ? OR model IS NOT ? OR pending_run IS NOT NULL)" + idle,
                        (seen[0] or "", seen[1] or "", now, sink, pid, seen[0] or "", seen[1] or ""),
                    )
                n += cur.rowcount
        return n

    def adopt(self, sink: str, points: Sequence[tuple[str, str, str, str, str, str]]) -> int:
        """Record sink points the ledger did not hold as live: (point_id, source, key, hash, model, run_id).

        Used by repair for points a killed run wrote but never recorded: once
        known, dedup compares them with the source and ``delete_missing``
        can remove them. A tombstone is brought back to life (the sink holds
        the point); its source version is kept.
        """
        if not points:
            return 0
        now = utc_now()
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
                " run_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (point_id, sink) DO UPDATE SET content_hash=excluded.content_hash,"
                " model=excluded.model, updated_at=excluded.updated_at, deleted_at=NULL,"
                " deleted_run_id=NULL, deleted_version=NULL, pending_run=NULL"
                " WHERE vectors.deleted_at IS NOT NULL",
                [
                    (sink, pid, src, key, h, HASH_SCHEME, m, run, now, now)
                    for pid, src, key, h, m, run in points
                ],
            )
        return len(points)

    def pending_count(self, sink: str) -> int:
        rows = self._db.query(
            "SELECT COUNT(*) AS n FROM vectors WHERE sink=? AND pending_run IS NOT NULL", (sink,)
        )
        return int(rows[0]["n"])

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


class SchemeMismatchError(ConfigError):
    """A run would write points of another id or vector scheme than the sink holds."""


def vector_states(rows: Sequence[Any]) -> dict[str, VectorState]:
    """Point id → state, from rows with the columns of :meth:`VectorsPart.lookup`."""
    return {
        r["point_id"]: VectorState(
            r["content_hash"],
            r["model"],
            r["source_version"],
            r["deleted_at"] is not None,
            r["pending_run"] is not None,
        )
        for r in rows
    }


def id_hash_pairs(blob: bytes, *, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse fixed-width records of a UUID point id and a 32-hex-digit hash prefix (``width`` bytes each,
    any separator after them) into ``S16`` id digests and ``S16`` hash prefixes, without a Python
    object per record. A record of another shape raises ValueError."""
    if len(blob) % width:
        raise ValueError(f"{len(blob)} bytes are not whole {width}-byte records")
    rec = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
    if len(rec) and not (rec[:, [8, 13, 18, 23]] == ord("-")).all():
        raise ValueError("a point id is not a UUID string")
    hex_id = np.ascontiguousarray(rec[:, _UUID_HEX]).tobytes().decode("ascii")
    hex_prefix = np.ascontiguousarray(rec[:, 36:68]).tobytes().decode("ascii")
    return (
        np.frombuffer(bytes.fromhex(hex_id), dtype="S16"),
        np.frombuffer(bytes.fromhex(hex_prefix), dtype="S16"),
    )


_UUID_HEX = [i for i in range(36) if i not in (8, 13, 18, 23)]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype="S16")

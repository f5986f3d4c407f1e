"""The batch look-ups of ``vectors.py`` for PostgreSQL: arrays where SQLite reads a JSON parameter.

Only these queries differ between backends: SQLite takes a whole batch of
ids as one ``json_each`` parameter, PostgreSQL as array parameters
(``= ANY(?)`` / ``unnest(...) WITH ORDINALITY``), which it plans as a join
against the ``(point_id, sink)`` index. Everything else — the writes, the
marks, settling — is the shared code of :class:`VectorsPart`. The set of
points one full pass has seen is a temporary table on the ledger's own
connection, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .pg_connection import PgLedgerConnection
from .vectors import VectorsPart, VectorState

_SEEN_TABLE = 'CREATE TEMP TABLE IF NOT EXISTS seen_points (point_id TEXT COLLATE "C" PRIMARY KEY)'

_SEEN_TABLE = 'CREATE TEMP TABLE IF NOT EXISTS seen_points (point_id TEXT COLLATE "C" PRIMARY KEY)'


class PgVectorsPart(VectorsPart):
    _db: PgLedgerConnection  # type: ignore[assignment]

    def lookup(self, sink: str, point_ids: Sequence[str]) -> dict[str, VectorState]:
        if not point_ids:
            return {}
        rows = self._db.query(
            "SELECT point_id, content_hash, model, source_version, deleted_at, pending_run FROM vectors"
            " WHERE sink=? AND point_id = ANY(?)",
            (sink, list(point_ids)),
        )
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

    def stale_positions(
        self, sink: str, model: str, point_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[int]:
        if not point_ids:
            return []
        if len(point_ids) != len(hashes):
            raise ValueError("point_ids and hashes differ in length")
        rows = self._db.query(
            "SELECT j.pos - 1 FROM unnest(?::text[], ?::text[])"
            " WITH ORDINALITY AS j(point_id, content_hash, pos) LEFT JOIN vectors AS v"
            " ON v.point_id = j.point_id AND v.sink = ? AND v.content_hash = j.content_hash AND v.model = ?"
            " AND v.deleted_at IS NULL AND v.pending_run IS NULL WHERE v.point_id IS NULL"
            " ORDER BY j.pos",
            (list(point_ids), list(hashes), sink, model),
        )
        return [int(r[0]) for r in rows]

    def find_embedded(self, model: str, hashes: Sequence[str], *, sink: str) -> dict[str, str]:
        if not hashes:
            return {}
        rows = self._db.query(  # the prefix term is what vectors_by_text indexes (schema v2)
            "SELECT content_hash, MIN(point_id) AS point_id FROM vectors"
            " WHERE substr(content_hash, 1, 16) = ANY(?) AND deleted_at IS NULL AND pending_run IS NULL"
            " AND content_hash = ANY(?) AND model=? AND sink=? GROUP BY content_hash",
            (sorted({h[:16] for h in hashes}), list(hashes), model, sink),
        )
        return {r["content_hash"]: r["point_id"] for r in rows}

    def _pending_candidates(
        self,
        sink: str,
        point_ids: Sequence[str],
        *,
        run_id: str,
        hashes: Sequence[str] | None,
        model: str | None,
    ) -> list[str]:
        if hashes is None:
            rows = self._db.query(
                "SELECT point_id FROM vectors WHERE sink = ? AND point_id = ANY(?) AND deleted_at IS NULL"
                " AND pending_run IS NOT ?",
                (sink, list(point_ids), run_id),
            )
        else:
            rows = self._db.query(
                "SELECT v.point_id FROM unnest(?::text[], ?::text[]) AS j(point_id, content_hash)"
                " JOIN vectors AS v ON v.point_id = j.point_id AND v.sink = ? WHERE v.deleted_at IS NULL"
                " AND v.pending_run IS NOT ? AND (v.content_hash != j.content_hash OR v.model != ?"
                " OR v.pending_run IS NOT NULL)",
                (list(point_ids), list(hashes), sink, run_id, model),
            )
        return [r[0] for r in rows]

    _seen_on: int | None = None

    def mark_seen(self, point_ids: Sequence[str]) -> None:
        with self._db.session() as conn:
            if self._seen_on is None:
                self._seen_on = self._db.generation
            self._check_seen()
            conn.execute(_SEEN_TABLE)
            conn.execute(
                "INSERT INTO pg_temp.seen_points SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (list(point_ids),),
            )

    def unseen_points(self, sink: str, source: str, *, chunk: int = 5000) -> Iterator[list[str]]:
        with self._db.session() as conn:
            self._check_seen()
            conn.execute(_SEEN_TABLE)
        rows = self._db.query(
            "SELECT point_id FROM vectors AS v WHERE sink=? AND source=? AND deleted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM pg_temp.seen_points AS s WHERE s.point_id = v.point_id)",
            (sink, source),
        )
        ids = [r["point_id"] for r in rows]
        for i in range(0, len(ids), chunk):
            yield ids[i : i + chunk]

    def clear_seen(self) -> None:
        self._seen_on = None
        with self._db.session() as conn:
            conn.execute("DROP TABLE IF EXISTS pg_temp.seen_points")

    def _check_seen(self) -> None:
        """Refuse to go on if the connection holding the seen points was lost: every point would look
        unseen, and a pass that prunes would delete them all."""
        if self._seen_on is not None and self._seen_on != self._db.generation:
            from ..errors import LedgerUnavailableError

            self._seen_on = None
            raise LedgerUnavailableError(
                f"lost the connection to the ledger at {self._db.url} during a full pass, and with it "
                "the points that pass had seen",
                hint="re-run: nothing was pruned, and the re-run finds the rows already written",
            )

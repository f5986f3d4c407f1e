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

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import vectors
from .pg_connection import PgLedgerConnection, PgWrite
from .vectors import Upsert, VectorsPart, VectorState, vector_states

_STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS ledger_stage (point_id TEXT, source TEXT, source_key TEXT,"
    " content_hash TEXT, source_version BIGINT) ON COMMIT DELETE ROWS"
)
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
        return vector_states(rows)

    def stale_positions(
        self, sink: str, model: str, point_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[int]:
        if not point_ids:
            return []
        wanted = dict(zip(point_ids, hashes, strict=True))
        held = {
            r[0]
            for r in self._live_rows(sink, point_ids, "content_hash, model, pending_run")
            if r[2] == model and r[3] is None and wanted.get(r[0]) == r[1]
        }
        return [i for i, pid in enumerate(point_ids) if pid not in held]

    _VIEW_START = ""

    def _view_chunk(self, sink: str, source: str, model: str, after: Any) -> tuple[Any, int, str]:
        """In point-id order along ``vectors_by_point``, aggregated into one string on the server (row
        by row, psycopg costs ~5 µs a row)."""
        row = self._db.query(
            "SELECT max(point_id), count(*), string_agg(x, '') FROM (SELECT point_id,"
            " point_id || substr(content_hash || ?, 1, 32) AS x FROM vectors WHERE sink = ? AND point_id > ?"
            " AND source = ? AND model = ? AND deleted_at IS NULL AND pending_run IS NULL"
            " ORDER BY point_id LIMIT ?) AS chunk",
            (vectors._PAD, sink, after, source, model, vectors._VIEW_CHUNK),
        )[0]
        return row[0], row[1], row[2]

    def _live_rows(self, sink: str, point_ids: Sequence[str], columns: str) -> list[Any]:
        """(point_id, columns...) of the live rows of these points, looked up by the point index.

        Why this shape: the lookup goes through ``vectors_by_point`` whatever
        the planner believes of the table (the fence keeps the other filters
        from steering it to the partial text index, and no join can be
        misplanned), and the comparison with the batch is a set look-up here.
        """
        return self._db.query(
            f"SELECT point_id, {columns} FROM (SELECT point_id, {columns}, deleted_at FROM vectors"
            " WHERE point_id = ANY(?) AND sink = ? OFFSET 0) AS v WHERE deleted_at IS NULL",
            (list(point_ids), sink),
        )

    def find_embedded(self, model: str, hashes: Sequence[str], *, sink: str) -> dict[str, str]:
        """One probe of ``vectors_by_text`` per hash (a lateral join). Given the whole batch as an
        ``= ANY`` array, the planner scans the table instead: measured at 1M points, 4k hashes,
        0.36 s against 0.05 s for texts the sink does not hold (a watch's changed rows)."""
        if not hashes:
            return {}
        rows = self._db.query(
            "SELECT w.h AS content_hash, p.point_id FROM unnest(?::text[]) AS w(h) CROSS JOIN LATERAL"
            " (SELECT point_id FROM vectors WHERE substr(content_hash, 1, 16) = substr(w.h, 1, 16)"
            " AND content_hash = w.h AND deleted_at IS NULL AND pending_run IS NULL AND model = ?"
            " AND sink = ? ORDER BY point_id LIMIT 1) AS p",
            (sorted(set(hashes)), model, sink),
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
        rows = self._live_rows(sink, point_ids, "content_hash, model, pending_run")
        if hashes is None:
            return [r[0] for r in rows if r[3] != run_id]
        wanted = dict(zip(point_ids, hashes, strict=True))
        return [
            r[0]
            for r in rows
            if r[3] != run_id and (r[1] != wanted.get(r[0]) or r[2] != model or r[3] is not None)
        ]

    @staticmethod
    def _set_pending(conn: Any, sink: str, point_ids: Sequence[str], *, run_id: str) -> None:
        """As on SQLite, one statement: a join on the batch's ids (one index probe each), where a
        statement per id (10k in a pipeline) cost ~0.1 ms each at 1M points."""
        conn.execute(
            "UPDATE vectors AS v SET pending_run = ? FROM unnest(?::text[]) AS w(pid)"
            " WHERE v.point_id = w.pid AND v.sink = ? AND v.deleted_at IS NULL",
            (run_id, list(point_ids), sink),
        )

    # --- recording by COPY ----------------------------------------------------------------------

    @staticmethod
    def _record_upserts(conn: Any, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """The upsert of :meth:`VectorsPart.record_upserts`, fed by binary COPY through a staging table.

        One ``INSERT ... SELECT ... ON CONFLICT`` for the whole batch instead of
        a statement per row (~3x the rows/s). A point twice in one batch keeps
        its last row, as the row-by-row upsert did.
        """
        from ..identity import HASH_SCHEME
        from .base import utc_now

        raw = conn.raw if isinstance(conn, PgWrite) else conn
        now = utc_now()
        _stage(raw, {r.point_id: r for r in rows}.values())
        raw.execute(
            "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
            " run_id, source_version, created_at, updated_at) SELECT %(sink)s, point_id, source, source_key,"
            " content_hash, %(scheme)s, %(model)s, %(run)s, source_version, %(now)s, %(now)s"
            " FROM pg_temp.ledger_stage ON CONFLICT (point_id, sink) DO UPDATE SET"
            " content_hash=excluded.content_hash, hash_scheme=excluded.hash_scheme, model=excluded.model,"
            " run_id=excluded.run_id, source_version=excluded.source_version, updated_at=excluded.updated_at,"
            " deleted_at=NULL, deleted_run_id=NULL, deleted_version=NULL, pending_run=NULL",
            {"sink": sink, "scheme": HASH_SCHEME, "model": model, "run": run_id, "now": now},
        )
        raw.execute("TRUNCATE pg_temp.ledger_stage")

    def record_tombstones(self, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        """:meth:`~.erasures.ErasuresPart.record_tombstones` fed by COPY through the staging table: one
        statement for the batch instead of one per row (10k deletes: ~0.6 s at 1M points)."""
        if not rows:
            return
        from ..identity import HASH_SCHEME
        from .base import utc_now

        newest: dict[str, Upsert] = {}  # a point twice: its newest version wins, as row by row
        for r in rows:
            held = newest.get(r.point_id)
            if held is None or _version(r) >= _version(held):
                newest[r.point_id] = r
        now = utc_now()
        with self._db.write() as conn:
            raw = conn.raw
            _stage(raw, newest.values())
            raw.execute(
                "INSERT INTO vectors (sink, point_id, source, source_key, content_hash, hash_scheme, model,"
                " run_id, source_version, created_at, updated_at, deleted_at, deleted_run_id,"
                " deleted_version)"
                " SELECT %(sink)s, point_id, source, source_key, content_hash, %(scheme)s, %(model)s,"
                " %(run)s, source_version, %(now)s, %(now)s, %(now)s, %(run)s, source_version"
                " FROM pg_temp.ledger_stage ON CONFLICT (point_id, sink) DO UPDATE"
                " SET deleted_at=COALESCE(vectors.deleted_at, excluded.deleted_at),"
                " deleted_run_id=COALESCE(vectors.deleted_run_id, excluded.deleted_run_id),"
                " deleted_version=excluded.deleted_version, source_version=excluded.source_version,"
                " updated_at=excluded.updated_at, pending_run=NULL"
                " WHERE vectors.source_version IS NULL OR vectors.source_version < excluded.source_version",
                {"sink": sink, "scheme": HASH_SCHEME, "model": model, "run": run_id, "now": now},
            )
            raw.execute("TRUNCATE pg_temp.ledger_stage")

    # --- planner statistics --------------------------------------------------------------------

    _recorded = 0

    def record_upserts(self, sink: str, rows: Sequence[Upsert], *, model: str, run_id: str) -> None:
        super().record_upserts(sink, rows, model=model, run_id=run_id)
        self._note_recorded(len(rows))

    def _note_recorded(self, n: int) -> None:
        """Refresh the table's statistics once this object has recorded a fifth of it (and 5,000 rows).

        A ledger that grows from empty within one run (a first embed) would
        otherwise be planned as the empty table autovacuum last saw.
        """
        self._recorded += n
        if self._recorded >= 5000:
            self._recorded = 0 if refresh_statistics(self._db, min_share=0.2) else self._recorded

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


def refresh_statistics(db: PgLedgerConnection, *, min_share: float = 0.2) -> bool:
    """ANALYZE ``vectors`` if more than ``min_share`` of it changed since; True if it ran (or was due).

    One process at a time: the others skip (an advisory try-lock), the
    statistics are shared.
    """
    from .pg_connection import lock_key

    with db.session() as conn:
        row = conn.execute(
            "SELECT GREATEST(c.reltuples, 0), COALESCE(s.n_mod_since_analyze, 0) FROM pg_class AS c"
            " LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid WHERE c.oid = 'vectors'::regclass"
        ).fetchone()
        if row is None or row[1] < max(min_share * float(row[0]), 1000):
            return False
        key = lock_key(db.url.schema, "analyze")
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            try:
                conn.execute("ANALYZE vectors")
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return True


def _stage(raw: Any, rows: Iterable[Upsert]) -> None:
    """COPY provenance rows into this transaction's staging table (one statement reads them all)."""
    raw.execute(_STAGE_TABLE)
    with raw.cursor().copy(
        "COPY pg_temp.ledger_stage (point_id, source, source_key, content_hash, source_version) FROM STDIN"
    ) as copy:
        for r in rows:
            copy.write_row((r.point_id, r.source, r.key, r.content_hash, r.source_version))


def _version(row: Upsert) -> int:
    return -1 if row.source_version is None else row.source_version

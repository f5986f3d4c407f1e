"""Migrations and adapters: which sink is moving to which model, in what state, with what evidence.

A dual-write migration walks ``building → ready → cut_over → finished``
(or ``rolled_back``); ``building``, ``ready`` and ``cut_over`` are *open*:
while a migration is open, every change to the old collection must reach
the new one too (see :func:`..migrate.open_migration_targets`). State
changes are compare-and-set inside one write transaction, so two tasks
racing on one migration cannot both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import MigrationError
from .base import LedgerPart, from_json, to_json, utc_now

#: states in which the new collection must be kept caught up with the old one
OPEN_STATES = ("building", "ready", "cut_over")
#: every state a migration row can hold
STATES = ("building", "ready", "cut_over", "finished", "rolled_back", "failed")


class MigrationsPart(LedgerPart):
    # --- migrations -------------------------------------------------------------------------------

    def create_migration(
        self,
        *,
        strategy: str,
        from_model: str,
        to_model: str,
        sink: str,
        target_sink: str | None,
        state: str,
        details: dict[str, Any] | None = None,
        exclusive: bool = False,
    ) -> str:
        """Record a new migration and return its id.

        ``exclusive``: refuse (MigrationError) if the sink already has an open
        migration, checked in the same transaction as the insert.
        """
        migration_id = uuid.uuid4().hex
        now = utc_now()
        history = [{"state": state, "at": now}]
        with self._db.write() as conn:
            if exclusive:
                conn.lock("migrations", sink)  # check-then-insert: one open migration per sink
                row = conn.execute(
                    "SELECT migration_id, to_model, state FROM migrations WHERE sink=? AND state IN"
                    f" ({','.join('?' * len(OPEN_STATES))})",
                    (sink, *OPEN_STATES),
                ).fetchone()
                if row is not None:
                    raise MigrationError(
                        f"{sink} already has an open migration {row['migration_id']} to {row['to_model']} "
                        f"({row['state']})",
                        hint="finish or roll back that migration first (action='finish' or 'rollback')",
                        migration_id=row["migration_id"],
                    )
            conn.execute(
                "INSERT INTO migrations (migration_id, strategy, from_model, to_model, sink, target_sink,"
                " state, created_at, updated_at, details) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    migration_id,
                    strategy,
                    from_model,
                    to_model,
                    sink,
                    target_sink,
                    state,
                    now,
                    now,
                    to_json({**(details or {}), "history": history}),
                ),
            )
        return migration_id

    def set_migration_state(
        self,
        migration_id: str,
        state: str,
        *,
        expect: Sequence[str] | None = None,
        details: dict[str, Any] | None = None,
        note: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move a migration to ``state`` (only from a state in ``expect``) and merge ``details``.

        Returns the updated migration. ``note`` is appended to the history entry.
        """
        if state not in STATES:
            raise ValueError(f"unknown migration state {state!r}")
        with self._db.write() as conn:
            conn.lock("migration", migration_id)  # compare-and-set: two tasks racing cannot both win
            row = conn.execute("SELECT * FROM migrations WHERE migration_id=?", (migration_id,)).fetchone()
            if row is None:
                raise MigrationError(
                    f"the ledger has no migration {migration_id}", hint="check the id (drift runs --json)"
                )
            if expect is not None and row["state"] not in expect:
                raise MigrationError(
                    f"migration {migration_id} is {row['state']}, not {' or '.join(expect)}",
                    hint="another task changed it meanwhile; re-read its state and retry the step",
                    state=row["state"],
                )
            merged = (from_json(row["details"]) or {}) | (details or {})
            now = utc_now()
            if state != row["state"] or note:
                merged["history"] = [*merged.get("history", []), {"state": state, "at": now, **(note or {})}]
            conn.execute(
                "UPDATE migrations SET state=?, updated_at=?, details=? WHERE migration_id=?",
                (state, now, to_json(merged), migration_id),
            )
        found = self.get_migration(migration_id)
        assert found is not None
        return found

    def get_migration(self, migration_id: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT * FROM migrations WHERE migration_id=?", (migration_id,))
        return _migration(rows[0]) if rows else None

    def migrations(
        self, sink: str | None = None, *, states: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Migrations of one sink (or all), newest first, optionally only in the given states."""
        where: list[str] = []
        params: list[Any] = []
        if sink is not None:
            where.append("(sink=? OR target_sink=?)")
            params += [sink, sink]
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params += list(states)
        sql = "SELECT * FROM migrations" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self._db.query(sql + " ORDER BY created_at DESC", tuple(params))
        return [_migration(r) for r in rows]

    def open_migrations(self, sink: str) -> list[dict[str, Any]]:
        """Open migrations *from* ``sink`` (whose new collection must follow every change), newest first."""
        rows = self._db.query(
            "SELECT * FROM migrations WHERE sink=? AND state IN"
            f" ({','.join('?' * len(OPEN_STATES))}) ORDER BY created_at DESC",
            (sink, *OPEN_STATES),
        )
        return [_migration(r) for r in rows]

    def open_migrations_into(self, target_sink: str) -> list[dict[str, Any]]:
        """Open migrations whose *new* collection is ``target_sink``."""
        rows = self._db.query(
            "SELECT * FROM migrations WHERE target_sink=? AND state IN"
            f" ({','.join('?' * len(OPEN_STATES))}) ORDER BY created_at DESC",
            (target_sink, *OPEN_STATES),
        )
        return [_migration(r) for r in rows]

    # --- adapters ---------------------------------------------------------------------------------

    def record_adapter(
        self,
        *,
        path: str,
        sha256: str | None,
        kind: str,
        from_model: str,
        to_model: str,
        sink: str | None,
        d_new: int | None,
        d_old: int | None,
        arr: float | None,
        overlap: float | None,
        threshold: float | None,
        passed: bool,
        run_id: str | None,
        details: dict[str, Any] | None = None,
        adapter_id: str | None = None,
    ) -> str:
        """Record a fitted adapter (and the gate's verdict); a rejected one is recorded too, as evidence."""
        adapter_id = adapter_id or uuid.uuid4().hex
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO adapters (adapter_id, path, sha256, kind, from_model, to_model, sink, d_new,"
                " d_old, arr, overlap, threshold, passed, run_id, created_at, details)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    adapter_id,
                    path,
                    sha256,
                    kind,
                    from_model,
                    to_model,
                    sink,
                    d_new,
                    d_old,
                    arr,
                    overlap,
                    threshold,
                    1 if passed else 0,
                    run_id,
                    utc_now(),
                    to_json(details),
                ),
            )
        return adapter_id

    def adapters(
        self,
        sink: str | None = None,
        *,
        from_model: str | None = None,
        to_model: str | None = None,
        passed: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Recorded adapters, newest first, filtered by sink, models and verdict."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("sink", sink), ("from_model", from_model), ("to_model", to_model)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if passed is not None:
            where.append("passed=?")
            params.append(1 if passed else 0)
        sql = "SELECT * FROM adapters" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self._db.query(sql + " ORDER BY created_at DESC", tuple(params))
        out = []
        for r in rows:
            item = dict(r)
            item["passed"] = bool(item["passed"])
            item["details"] = from_json(item["details"])
            out.append(item)
        return out

    # --- what a migration needs to know about the old collection ---------------------------------

    def live_sources(self, sink: str) -> dict[str, int]:
        """Live points of ``sink`` per source name."""
        rows = self._db.query(
            "SELECT source, COUNT(*) AS n FROM vectors WHERE sink=? AND deleted_at IS NULL GROUP BY source"
            " ORDER BY source",
            (sink,),
        )
        return {r["source"]: int(r["n"]) for r in rows}

    def sample_points(self, sink: str, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
        """About ``n`` live provenance rows of ``sink``, a deterministic pseudo-random sample.

        Point ids are UUIDs of hashes, so the ``n`` ids following a seed-derived
        id (wrapping around) are a uniform sample, read through the
        ``(point_id, sink)`` index without scanning the table.
        """
        start = str(uuid.uuid5(uuid.NAMESPACE_OID, f"drift-sample-{seed}"))
        cols = "point_id, source, source_key, content_hash, model"
        first = self._db.query(
            f"SELECT {cols} FROM vectors WHERE point_id >= ? AND sink=? AND deleted_at IS NULL"
            " ORDER BY point_id LIMIT ?",
            (start, sink, n),
        )
        rest = []
        if len(first) < n:
            rest = self._db.query(
                f"SELECT {cols} FROM vectors WHERE point_id < ? AND sink=? AND deleted_at IS NULL"
                " ORDER BY point_id LIMIT ?",
                (start, sink, n - len(first)),
            )
        return [dict(r) for r in [*first, *rest]]

    def last_write_params(self, sink: str, source: str) -> dict[str, Any] | None:
        """Parameters (text_col, key_col, filter) of the last successful embed/watch of (sink, source)."""
        rows = self._db.query(
            "SELECT details FROM runs WHERE sink=? AND source=? AND kind IN ('embed', 'watch')"
            " AND status='success' ORDER BY started_at DESC LIMIT 1",
            (sink, source),
        )
        if not rows:
            return None
        details = from_json(rows[0]["details"]) or {}
        return dict(details.get("params") or {})

    def last_write_times(self, sink: str) -> tuple[str | None, str | None]:
        """(latest finish of an embed/watch run that changed ``sink``, latest start of any such run)."""
        changed = self._db.query(
            "SELECT MAX(finished_at) AS t FROM runs WHERE sink=? AND kind IN ('embed', 'watch')"
            " AND status='success' AND (n_written > 0 OR n_deleted > 0)",
            (sink,),
        )
        started = self._db.query(
            "SELECT MAX(started_at) AS t FROM runs WHERE sink=? AND kind IN ('embed', 'watch')"
            " AND status='success'",
            (sink,),
        )
        return changed[0]["t"], started[0]["t"]


def _migration(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["details"] = from_json(out.get("details")) or {}
    return out

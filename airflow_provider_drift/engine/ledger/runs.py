"""Runs: one row per embed/watch/migrate/erase, opened before work and closed after.

A run that is killed (SIGKILL, OOM) never closes its row: the next run and
``drift runs`` mark it ``abandoned`` once its process is known to be gone
(see ``liveness.py``).
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from ..errors import LedgerError, StorageFullError
from .base import LedgerPart, from_json, to_json, utc_now
from .liveness import HEARTBEAT, HOST, holder_gone

log = logging.getLogger(__name__)

_COUNTS = {
    "n_rows": ("n_rows_processed", "n_changes", "n_points"),
    "n_deduped": ("n_rows_deduped", "n_unchanged"),
    "n_embedded": ("n_embedded",),
    "n_written": ("n_written",),
    "n_deleted": ("n_deleted",),
    "tokens": ("tokens",),
}


def new_run_id() -> str:
    return uuid.uuid4().hex


class RunsPart(LedgerPart):
    def start_run(
        self,
        *,
        kind: str,
        model: str | None = None,
        sink: str | None = None,
        source: str | None = None,
        run_id: str | None = None,
        run_context: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> str:
        """Record a run as ``running`` and return its id (so a crash leaves a trace)."""
        run_id = run_id or new_run_id()
        ctx = run_context or {}
        self.mark_abandoned()
        now = utc_now()
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, kind, status, model, sink, source, started_at, dag_id, task_id,"
                " airflow_run_id, try_number, details, host, pid, heartbeat_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    kind,
                    "running",
                    model,
                    sink,
                    source,
                    now,
                    ctx.get("dag_id"),
                    ctx.get("task_id"),
                    ctx.get("run_id"),
                    ctx.get("try_number"),
                    to_json({"params": params or {}, "context": ctx}),
                    HOST,
                    os.getpid(),
                    now,
                ),
            )
        HEARTBEAT.add_run(self.location, run_id)
        return run_id

    def mark_abandoned(self) -> list[str]:
        """Close the ``running`` runs whose process is gone as ``abandoned``; return their ids.

        Compare-and-set on the heartbeat read, so a run that beat meanwhile is left alone.
        """
        rows = self._db.query(
            "SELECT run_id, host, pid, COALESCE(heartbeat_at, started_at) AS beat FROM runs"
            " WHERE status='running'"
        )
        gone = [r for r in rows if holder_gone(r["host"], r["pid"], r["beat"])]
        if not gone:
            return []
        now = utc_now()
        with self._db.write() as conn:
            for r in gone:
                who = f"process {r['pid']} on {r['host']}" if r["host"] else "its process"
                conn.execute(
                    "UPDATE runs SET status='abandoned', finished_at=?, error=? WHERE run_id=?"
                    " AND status='running' AND COALESCE(heartbeat_at, started_at)=?",
                    (now, f"abandoned: {who} stopped without closing the run (last heartbeat {r['beat']})",
                     r["run_id"], r["beat"]),
                )  # fmt: skip
        return [r["run_id"] for r in gone]

    def finish_run(
        self, run_id: str, record: dict[str, Any], *, status: str = "success", error: str | None = None
    ) -> None:
        """Close a run with its final counts; ``record`` is the run record's ``to_dict()``."""
        values = {col: next((record[k] for k in keys if k in record), 0) for col, keys in _COUNTS.items()}
        cost = record.get("cost_usd")
        HEARTBEAT.drop_run(self.location, run_id)
        with self._db.write() as conn:
            row = conn.execute("SELECT details FROM runs WHERE run_id=?", (run_id,)).fetchone()
            details = (from_json(row["details"]) if row else None) or {}
            details["record"] = record
            conn.execute(
                "UPDATE runs SET status=?, finished_at=?, duration_s=?, n_rows=?, n_deduped=?, n_embedded=?,"
                " n_written=?, n_deleted=?, tokens=?, cost_usd=?, cost_known=?, error=?, details=?"
                " WHERE run_id=?",
                (
                    status,
                    utc_now(),
                    record.get("duration_s"),
                    values["n_rows"] or 0,
                    values["n_deduped"] or 0,
                    values["n_embedded"] or 0,
                    values["n_written"] or 0,
                    values["n_deleted"] or 0,
                    values["tokens"] or 0,
                    cost,
                    0 if cost is None else 1,
                    error,
                    to_json(details),
                    run_id,
                ),
            )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT * FROM runs WHERE run_id=?", (run_id,))
        return _run_dict(rows[0]) if rows else None

    def recent_runs(self, sink: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """The latest runs, newest first; all sinks when ``sink`` is None (killed runs marked abandoned)."""
        if not self._db.read_only:  # a read-only ledger still lists, with killed runs as "running"
            try:
                self.mark_abandoned()
            except (LedgerError, StorageFullError) as exc:
                log.warning("could not mark abandoned runs in %s: %s", self.location, exc)
        if sink is None:
            rows = self._db.query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        else:
            rows = self._db.query(
                "SELECT * FROM runs WHERE sink=? ORDER BY started_at DESC LIMIT ?", (_sink_uri(sink), limit)
            )
        return [_run_dict(r) for r in rows]


def _sink_uri(sink: Any) -> str:
    return str(getattr(sink, "uri", sink))


def _run_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["details"] = from_json(out.get("details"))
    out["cost_known"] = bool(out.get("cost_known"))
    return out

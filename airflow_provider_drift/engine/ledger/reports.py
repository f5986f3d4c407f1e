"""Answers to the awkward questions: what did it cost, where did this vector come from."""

from __future__ import annotations

from typing import Any, Literal

from .base import LedgerPart

CostDimension = Literal["model", "sink", "source", "day", "kind"]

_GROUP = {
    "model": "model",
    "sink": "sink",
    "source": "source",
    "kind": "kind",
    "day": "substr(started_at, 1, 10)",
}


class ReportsPart(LedgerPart):
    def cost_by(self, by: CostDimension = "model", *, since: str | None = None) -> list[dict[str, Any]]:
        """Spend grouped by one dimension, most expensive first.

        ``cost_usd`` sums only runs with a known price; ``unpriced_runs``
        counts the others so an unknown price is visible, never hidden as 0.
        """
        if by not in _GROUP:
            from ..errors import ConfigError

            raise ConfigError(f"cannot group cost by {by!r}", hint=f"use one of {sorted(_GROUP)}")
        expr = _GROUP[by]
        where = "WHERE status IN ('success', 'failed')" + (" AND started_at >= ?" if since else "")
        rows = self._db.query(
            f"SELECT {expr} AS {by},"
            " ROUND(CAST(COALESCE(SUM(CASE WHEN cost_known != 0 THEN cost_usd END), 0) AS NUMERIC), 8)"
            " AS cost_usd, SUM(tokens) AS tokens, SUM(n_embedded) AS n_embedded, COUNT(*) AS runs,"
            f" SUM(CASE WHEN cost_known != 0 THEN 0 ELSE 1 END) AS unpriced_runs FROM runs {where}"
            f" GROUP BY {expr} ORDER BY cost_usd DESC, {by}",
            (since,) if since else (),
        )
        return [dict(r) for r in rows]

    def cost_by_model(self) -> list[dict[str, Any]]:
        return self.cost_by("model")

    def sink_totals(self, sink: str) -> dict[str, Any]:
        """Finished runs of one sink and their known cost (unpriced runs counted apart)."""
        row = self._db.query(
            "SELECT COUNT(*) AS runs, COALESCE(SUM(CASE WHEN cost_known != 0 THEN cost_usd END), 0)"
            " AS cost_usd, COALESCE(SUM(CASE WHEN cost_known != 0 THEN 0 ELSE 1 END), 0) AS unpriced_runs"
            " FROM runs"
            " WHERE sink=? AND status IN ('success', 'failed')",
            (sink,),
        )[0]
        return {
            "runs": int(row["runs"]),
            "cost_usd": round(float(row["cost_usd"]), 8),
            "unpriced_runs": int(row["unpriced_runs"]),
        }

    def provenance(self, point_id: str) -> dict[str, Any] | None:
        """Full lineage of one vector: source row, text hash, model, run, cost, deletion.

        When the same id lives in several sinks (dual-write), ``copies``
        lists each; the top-level fields describe the most recent one.
        """
        rows = self._db.query(
            "SELECT v.*, r.cost_usd AS run_cost_usd, r.n_embedded AS run_n_embedded, r.kind AS run_kind,"
            " r.dag_id, r.task_id, r.airflow_run_id FROM vectors v LEFT JOIN runs r ON r.run_id = v.run_id"
            " WHERE v.point_id=? ORDER BY v.updated_at DESC",
            (point_id,),
        )
        if not rows:
            return None
        copies = []
        for r in rows:
            item = dict(r)
            n = item.pop("run_n_embedded") or 0
            cost = item.pop("run_cost_usd")
            item["embedding_id"] = item["point_id"]
            item["source_hash"] = item["content_hash"]
            item["deleted"] = item["deleted_at"] is not None
            # The run's cost spread over the texts it embedded: what this vector cost.
            item["cost_usd"] = None if cost is None else (cost / n if n else 0.0)
            copies.append(item)
        erasures = self._db.query(
            "SELECT * FROM erasures WHERE point_id=? ORDER BY requested_at", (point_id,)
        )
        out = dict(copies[0])
        out["copies"] = copies
        out["erasures"] = [dict(e) for e in erasures]
        return out

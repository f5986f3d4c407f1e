"""CDC watermarks: the last source version applied to a sink (exclusive start of the next read)."""

from __future__ import annotations

from .base import LedgerPart, utc_now


class WatermarksPart(LedgerPart):
    def get_watermark(self, source: str, sink: str) -> int | None:
        rows = self._db.query("SELECT version FROM watermarks WHERE source=? AND sink=?", (source, sink))
        return int(rows[0]["version"]) if rows else None

    def set_watermark(self, source: str, sink: str, version: int, *, run_id: str | None = None) -> None:
        """Advance (never rewind) the watermark; call only after sink and ledger writes succeeded."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO watermarks (source, sink, version, run_id, updated_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (source, sink) DO UPDATE SET version=CASE WHEN excluded.version"
                " > watermarks.version THEN excluded.version ELSE watermarks.version END,"
                " run_id=excluded.run_id, updated_at=excluded.updated_at",
                (source, sink, version, run_id, utc_now()),
            )

    def watermarks(self, sink: str) -> dict[str, int]:
        rows = self._db.query("SELECT source, version FROM watermarks WHERE sink=?", (sink,))
        return {r["source"]: int(r["version"]) for r in rows}

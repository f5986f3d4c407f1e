"""DeltaCDFTrigger: poll a Delta table's log in the triggerer until a watch has work to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .events import error_event

#: statuses this trigger emits; DeltaCDFSensor.execute_complete rejects any other
EventStatus = Literal["success", "skipped", "error"]
EVENT_STATUSES: frozenset[str] = frozenset({"success", "skipped", "error"})


class DeltaCDFTrigger(BaseTrigger):
    """
    Fire once the table has committed changes after the watermark of (source, sink).

    Everything it needs is a JSON primitive resolved by the sensor on the
    worker — the ledger file, the canonical source name and the sink's
    credential-free URI — so it holds no secrets and reads no connections.
    The check itself is the engine's :func:`~airflow_provider_drift.engine.pending.check_changes`,
    run in a thread together with every import and file read it needs, so the
    triggerer's event loop never blocks. (Once per triggerer process, numpy's C
    extension initialises with the GIL held, about 0.1 s, when pyarrow is first
    imported; no thread can avoid that.)

    Emits one event: ``{"status": "success", "pending": {...}}`` when ready,
    ``{"status": "skipped", ...}`` when a closed data interval has nothing
    pending, ``{"status": "error", "message": ..., "error_type": ..., "terminal": ...}`` on an engine error.

    :param table: path/URI of the Delta table.
    :param source: the table's canonical source name (as recorded in the ledger).
    :param sink_uri: the sink's identity as the ledger records it.
    :param ledger_path: the ledger file (resolved on the worker).
    :param ledger_conn_id: for a PostgreSQL ledger, the connection to open it with (the URL in
        ``ledger_path`` has no password); None for a file.
    :param interval_start: ISO start of the data interval (interval mode), else None.
    :param interval_end: ISO end of the data interval (interval mode), else None.
    :param min_versions: commits needed.
    :param min_changed_rows: changed rows needed, or None.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        *,
        table: str,
        source: str,
        sink_uri: str,
        ledger_path: str,
        ledger_conn_id: str | None = None,
        interval_start: str | None = None,
        interval_end: str | None = None,
        min_versions: int = 1,
        min_changed_rows: int | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.table = table
        self.source = source
        self.sink_uri = sink_uri
        self.ledger_path = ledger_path
        self.ledger_conn_id = ledger_conn_id
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.min_versions = min_versions
        self.min_changed_rows = min_changed_rows
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "source": self.source,
                "sink_uri": self.sink_uri,
                "ledger_path": self.ledger_path,
                "ledger_conn_id": self.ledger_conn_id,
                "interval_start": self.interval_start,
                "interval_end": self.interval_end,
                "min_versions": self.min_versions,
                "min_changed_rows": self.min_changed_rows,
                "poll_interval": self.poll_interval,
            },
        )

    @property
    def interval(self) -> tuple[datetime, datetime] | None:
        if self.interval_start is None or self.interval_end is None:
            return None
        return datetime.fromisoformat(self.interval_start), datetime.fromisoformat(self.interval_end)

    def _ledger(self) -> Any:
        if self.ledger_conn_id is None:
            return self.ledger_path
        from airflow_provider_drift.hooks.ledger import DriftLedgerHook

        return DriftLedgerHook(drift_ledger_conn_id=self.ledger_conn_id).get_location()

    def check(self) -> Any:
        """One blocking check (ledger + Delta log); run it in a thread."""
        from airflow_provider_drift.engine.pending import check_changes

        return check_changes(
            self.table,
            sink_uri=self.sink_uri,
            ledger=self._ledger(),
            source=self.source,
            interval=self.interval,
            min_versions=self.min_versions,
            min_changed_rows=self.min_changed_rows,
        )

    def poll(self) -> dict[str, Any] | None:
        """One blocking poll: the event payload to emit, or None to wait. Run it in a thread.

        Everything that blocks lives here — the first import of the engine,
        pyarrow and deltalake, opening the table's log, the ledger read — so
        ``run()`` itself only awaits.
        """
        from airflow_provider_drift.engine.errors import DriftError

        try:
            found = self.check()
        except DriftError as exc:
            return error_event(exc)
        if found.ready:
            return {"status": "success", "pending": found.pending.to_dict()}
        if found.final:
            return {"status": "skipped", "pending": found.pending.to_dict()}
        self.log.info("no changes yet (%s); next check in %ss", found.pending, self.poll_interval)
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            payload = await asyncio.to_thread(self.poll)
            if payload is not None:
                if payload["status"] == "success":
                    self.log.info("changes pending: %s", payload["pending"])
                yield TriggerEvent(payload)
                return
            await asyncio.sleep(self.poll_interval)

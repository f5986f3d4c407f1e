"""Leases: one writer at a time per (source, sink) for the runs that must not overlap.

Two ``watch`` runs of one table into one sink would both read the window
after the watermark and both pay for it. The second waits for the first's
lease (bounded), then reads the advanced watermark and finds nothing to do.
A lease whose holder died (same host and pid gone, or a stale heartbeat on
any host) is taken over, so a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import TransientError
from .base import LedgerPart, utc_now
from .liveness import HEARTBEAT, HOST, holder_gone

#: how long a run waits for another's lease by default, in seconds
DEFAULT_LEASE_WAIT_S = 900.0


class LeaseBusyError(TransientError):
    """Another live run held the lease for longer than the wait allows."""


class LeasesPart(LedgerPart):
    @contextmanager
    def lease(
        self, source: str, sink: str, *, wait_s: float = DEFAULT_LEASE_WAIT_S, poll_s: float = 0.2
    ) -> Iterator[str]:
        """Hold the (source, sink) lease for the block; wait up to ``wait_s`` for a live holder."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        while True:
            busy = self._try_lease(source, sink, holder)
            if busy is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseBusyError(
                    f"another run (process {busy[1]} on {busy[0]}, since {busy[2]}) is writing {source}"
                    f" into {sink} and still held it after {wait_s:.0f}s",
                    hint="retry when that run has finished: it advances the watermark, so the retry "
                    "only applies what is left",
                )
            time.sleep(poll_s)
        key = (source, sink, holder)
        HEARTBEAT.add_lease(self.location, key)
        try:
            yield holder
        finally:
            HEARTBEAT.drop_lease(self.location, key)
            with self._db.write() as conn:
                conn.execute("DELETE FROM leases WHERE source=? AND sink=? AND holder=?", key)

    def _try_lease(self, source: str, sink: str, holder: str) -> tuple[str, int, str] | None:
        """Take the lease if it is free or its holder is gone; else return (host, pid, since)."""
        with self._db.write() as conn:
            conn.lock("lease", source, sink)  # read-then-take: no other transaction may take it between
            row = conn.execute(
                "SELECT host, pid, acquired_at, heartbeat_at FROM leases WHERE source=? AND sink=?",
                (source, sink),
            ).fetchone()
            if row is not None and not holder_gone(row["host"], row["pid"], row["heartbeat_at"]):
                return str(row["host"]), int(row["pid"]), str(row["acquired_at"])
            now = utc_now()
            conn.execute(
                "INSERT INTO leases (source, sink, holder, host, pid, acquired_at, heartbeat_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (source, sink) DO UPDATE SET holder=excluded.holder,"
                " host=excluded.host, pid=excluded.pid, acquired_at=excluded.acquired_at,"
                " heartbeat_at=excluded.heartbeat_at",
                (source, sink, holder, HOST, os.getpid(), now, now),
            )
        return None

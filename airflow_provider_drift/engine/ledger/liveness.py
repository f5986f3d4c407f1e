"""Is the process behind a run (or a lease) still alive? Host, pid and a heartbeat answer it.

A run killed by SIGKILL or the OOM killer cannot close its own row. Every
run and lease records the host and pid that hold it and a heartbeat that a
daemon thread of that process refreshes every ``HEARTBEAT_S``. Another
process decides the holder is gone when it runs on the same host and the
pid no longer exists, or when the heartbeat is older than ``STALE_AFTER_S``
(the only test possible across hosts, and the guard against a reused pid).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from .location import LedgerLocation

log = logging.getLogger(__name__)


def _host_id() -> str:
    """The hostname, plus the pid namespace where there is one: containers may share a hostname,
    and a pid can only be tested for life from inside its own namespace."""
    name = socket.gethostname()
    try:
        return f"{name} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return name


HOST = _host_id()
#: seconds between heartbeats of a live run or lease
HEARTBEAT_S = float(os.environ.get("DRIFT_HEARTBEAT_S", "30"))
#: a holder whose heartbeat is older than this is gone, whatever its host
STALE_AFTER_S = float(os.environ.get("DRIFT_STALE_AFTER_S", "600"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def holder_gone(
    host: str | None, pid: int | None, heartbeat_at: str | None, *, now: datetime | None = None
) -> bool:
    """True when the process that holds a run or lease is certainly not running it any more."""
    if host == HOST and pid is not None and pid != os.getpid() and not pid_alive(pid):
        return True
    if heartbeat_at is None:
        return False
    try:
        beat = datetime.fromisoformat(heartbeat_at)
    except ValueError:
        return False
    age = ((now or datetime.now(UTC)) - beat).total_seconds()
    return age > STALE_AFTER_S


class _Heartbeat:
    """One daemon thread per process refreshing the heartbeat of its runs and leases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[LedgerLocation, set[str]] = {}
        self._leases: dict[LedgerLocation, set[tuple[str, str, str]]] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add_run(self, path: LedgerLocation, run_id: str) -> None:
        with self._lock:
            self._runs.setdefault(path, set()).add(run_id)
            self._start()

    def drop_run(self, path: LedgerLocation, run_id: str) -> None:
        with self._lock:
            self._runs.get(path, set()).discard(run_id)

    def add_lease(self, path: LedgerLocation, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._leases.setdefault(path, set()).add(key)
            self._start()

    def drop_lease(self, path: LedgerLocation, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._leases.get(path, set()).discard(key)

    def forget(self) -> None:
        """Stop beating for every run and lease of this process (a test's runs end with the test)."""
        with self._lock:
            self._runs.clear()
            self._leases.clear()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._thread.ident is None:
            self._thread = threading.Thread(target=self._loop, name="drift-heartbeat", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        conns: dict[LedgerLocation, Any] = {}
        while not self._wake.wait(HEARTBEAT_S):
            with self._lock:
                paths = {*self._runs, *self._leases}
                work = {p: (set(self._runs.get(p, ())), set(self._leases.get(p, ()))) for p in paths}
            for path, (runs, leases) in work.items():
                if not runs and not leases:
                    if path in conns:
                        conns.pop(path).close()
                    continue
                try:
                    conn = conns.get(path) or conns.setdefault(path, open_connection(path))
                    now = datetime.now(UTC).isoformat(timespec="microseconds")
                    with conn.write() as c:
                        c.executemany(
                            "UPDATE runs SET heartbeat_at=? WHERE run_id=? AND status='running'",
                            [(now, r) for r in runs],
                        )
                        c.executemany(
                            "UPDATE leases SET heartbeat_at=? WHERE source=? AND sink=? AND holder=?",
                            [(now, *k) for k in leases],
                        )
                except Exception as exc:  # a missed beat is retried; only a long silence matters
                    log.warning("heartbeat to the ledger %s failed: %s", path, exc)


def open_connection(location: LedgerLocation) -> Any:
    """A connection of its own to the ledger at ``location`` (the heartbeat must not share a run's)."""
    from pathlib import Path

    if isinstance(location, Path):
        from .connection import LedgerConnection
        from .schema import SCHEMA_VERSION, ensure_schema

        return LedgerConnection(location, schema_version=SCHEMA_VERSION, ensure_schema=ensure_schema)
    from .pg_connection import PgLedgerConnection

    return PgLedgerConnection(location)


HEARTBEAT = _Heartbeat()

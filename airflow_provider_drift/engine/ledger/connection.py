"""One SQLite connection per Ledger, safe for several processes writing at once.

Why this shape: parallel Airflow tasks write the same ledger file. WAL lets
readers run beside a writer; every write transaction starts with
``BEGIN IMMEDIATE`` so two writers queue on the busy handler instead of
deadlocking on a read→write upgrade, and a still-busy database is retried
with jittered backoff for a bounded time before failing loudly.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LedgerBusyError, LedgerError

DRIFT_HOME_ENV = "DRIFT_HOME"
DEFAULT_LEDGER_PATH = Path("~/.drift/ledger.db")
LEDGER_PATH_ENV = "DRIFT_LEDGER_PATH"

_BUSY_TIMEOUT_S = 30.0
_MAX_LOCK_WAIT_S = 300.0


def resolve_ledger_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The ledger file: an explicit path, else ``$DRIFT_LEDGER_PATH``, else ``$DRIFT_HOME/ledger.db``.

    ``DRIFT_HOME`` defaults to ``~/.drift``.
    """
    if path is None:
        home = os.environ.get(DRIFT_HOME_ENV)
        path = os.environ.get(LEDGER_PATH_ENV) or (Path(home) / "ledger.db" if home else DEFAULT_LEDGER_PATH)
    text = str(path)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite://") :]
    return Path(text).expanduser()


class LedgerConnection:
    """A serialised sqlite3 connection with explicit write transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path), timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(
                f"cannot open the ledger at {path}: {exc}",
                hint="check the directory exists and is writable, or point the drift_ledger connection "
                "(or DRIFT_LEDGER_PATH) at another file",
            ) from exc
        self._lock = threading.RLock()
        self._conn.row_factory = sqlite3.Row
        self._retrying(self._set_pragmas)

    def _set_pragmas(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Provenance keys are random UUIDs: inserts touch pages all over the B-trees,
        # so a roomy page cache (64 MiB, per connection) is what keeps them fast.
        self._conn.execute("PRAGMA cache_size=-65536")

    def _retrying(self, fn):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + _MAX_LOCK_WAIT_S
        delay = 0.05
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise LedgerError(
                        f"the ledger {self.path} cannot be used: {exc}",
                        hint="free space on its disk (or check the file's permissions), then re-run: "
                        "what the ledger did not record is written again",
                    ) from exc
                if time.monotonic() > deadline:
                    raise LedgerBusyError(
                        f"the ledger {self.path} stayed locked for {_MAX_LOCK_WAIT_S:.0f}s",
                        hint="another process holds a long write transaction; retry the run",
                    ) from exc
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 2.0)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one IMMEDIATE transaction; commit on success, roll back on error."""
        with self._lock:
            self._retrying(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    self._conn.execute("ROLLBACK")
                raise LedgerError(
                    f"the ledger {self.path} cannot be written: {exc}",
                    hint="free space on its disk (or check the file's permissions), then re-run: "
                    "what the ledger did not record is written again",
                ) from exc
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._retrying(lambda: self._conn.execute("COMMIT"))

    def query(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._retrying(lambda: self._conn.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

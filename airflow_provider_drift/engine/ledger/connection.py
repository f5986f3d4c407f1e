"""One SQLite connection per Ledger, safe for several processes writing at once.

Why this shape: parallel Airflow tasks write the same ledger file. WAL lets
readers run beside a writer; every write transaction starts with
``BEGIN IMMEDIATE`` so two writers queue on the busy handler instead of
deadlocking on a read→write upgrade, and a still-busy database is retried
with jittered backoff for a bounded time before failing loudly.

What is refused rather than guessed at, because a wrong guess loses history
(every text would be paid for again):

- A 0-byte file. A new ledger is built in a scratch file beside the target
  and hard-linked into place only once its schema is committed, so a ledger
  this code creates is never empty, not even while another process is
  creating it. A 0-byte file is therefore a truncated ledger, or one an older
  release was killed creating before its first commit; only the user can
  tell, so the error says how to check and to delete it if it held nothing.
  (A 0-byte file with a non-empty ``-wal`` beside it is opened: its content
  is in the WAL.)
- A file that is not SQLite, or an SQLite database of another application
  (tables, but not the ledger's): never written to.
- A corrupt database: LedgerError at the first statement that finds it.

A ledger whose file or folder cannot be written (a read-only mount, a
snapshot) opens read-only: reports work and the first write fails with one
clear LedgerError. A full disk is a :class:`StorageFullError` (transient).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from ..errors import DriftError, LedgerBusyError, LedgerError, StorageFullError

DRIFT_HOME_ENV = "DRIFT_HOME"
DEFAULT_LEDGER_PATH = Path("~/.drift/ledger.db")
LEDGER_PATH_ENV = "DRIFT_LEDGER_PATH"

_BUSY_TIMEOUT_S = 30.0
_MAX_LOCK_WAIT_S = 300.0
#: free bytes under which an I/O error on the ledger's disk is taken as a full disk
_FULL_BELOW = 1 << 20
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: tables every drift ledger has had since schema version 1
_LEDGER_TABLES = {"runs", "vectors", "sinks", "watermarks"}
_OTHER_LEDGER = "point the drift_ledger connection (or --ledger / DRIFT_LEDGER_PATH) at another file"

#: brings an open ledger to the current schema inside the caller's write transaction
SchemaStep = Callable[[sqlite3.Connection, Path], None]


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


class SqliteLedgerConnection(sqlite3.Connection):
    """The connection a write block sees; ``lock`` is the port's row-lock call, a no-op here.

    Every SQLite write transaction is ``BEGIN IMMEDIATE``: it already holds
    the whole database, so a read-then-write inside it needs no further lock.
    (PostgreSQL takes an advisory lock on the key, see ``pg_connection.py``.)
    """

    def lock(self, *key: object) -> None:
        del key


class LedgerConnection:
    """A serialised sqlite3 connection with explicit write transactions.

    ``read_only``: True opens read-only always (a caller that only reads);
    None opens read-write if the file and folder can be written, else
    read-only; False requires write access and fails at once without it.
    """

    def __init__(
        self,
        path: Path,
        *,
        schema_version: int,
        ensure_schema: SchemaStep,
        read_only: bool | None = None,
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.read_only = False
        exists = _check_file(path)
        if not exists:
            _create(path, ensure_schema)
        writable = _writable(path)
        if read_only is False and not writable:
            raise LedgerError(
                f"the ledger {path} cannot be written (read-only file, folder or disk)",
                hint=f"make it writable, or {_OTHER_LEDGER}",
            )
        self._full: StorageFullError | None = None
        try:
            self._open(
                read_only=bool(read_only) or not writable,
                writable=writable,
                version=schema_version,
                ensure_schema=ensure_schema,
            )
        except StorageFullError as exc:
            if read_only is not None:
                raise
            # A full disk must not stop reports: read what is there; the first write raises this.
            self._full = exc
            self._open(read_only=True, writable=False, version=schema_version, ensure_schema=ensure_schema)

    def _open(self, *, read_only: bool, writable: bool, version: int, ensure_schema: SchemaStep) -> None:
        schema_version, path = version, self.path
        self.read_only = read_only
        self._conn = self._connect()
        self._conn.row_factory = sqlite3.Row
        with self._translated("open"):
            version = self._retrying(self._check_contents)  # before any pragma: a foreign file stays as it is
            if self.read_only and version < schema_version and writable:
                self._conn.close()  # an upgrade is every opener's job: reopen able to write it
                self.read_only = False
                self._conn = self._connect()
                self._conn.row_factory = sqlite3.Row
            if not self.read_only:
                self._retrying(lambda: _set_pragmas(self._conn))
            if version != schema_version:
                if self.read_only and version < schema_version:
                    raise LedgerError(
                        f"the ledger {path} has schema version {version} and cannot be upgraded to "
                        f"{schema_version} where it is (read-only)",
                        hint="open it once where it can be written (any drift run upgrades it), "
                        "or copy it to a writable folder",
                    )
                if not self.read_only:
                    with self.write() as conn:
                        ensure_schema(conn, path)
                else:
                    ensure_schema(self._conn, path)  # only checks: a newer schema is refused

    # -- opening ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            if not self.read_only:
                return sqlite3.connect(
                    str(path),
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                    factory=SqliteLedgerConnection,
                )
            uri = f"file:{quote(str(path.absolute()))}?mode=ro"
            try:
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                    factory=SqliteLedgerConnection,
                )
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError:
                # WAL needs a -shm file, which a read-only folder cannot hold. With no WAL content
                # pending, the file alone is the whole ledger and nobody can change it here.
                if _size(Path(f"{path}-wal")):
                    raise LedgerError(
                        f"the ledger {path} is read-only and has changes not yet folded in from its "
                        f"-wal file, which only a writer can do",
                        hint="open it once where it can be written, or copy the .db and -wal files "
                        "to a writable folder",
                    ) from None
                return sqlite3.connect(
                    uri + "&immutable=1",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    factory=SqliteLedgerConnection,
                )
        except DriftError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise _translate(exc, path, "open") from exc

    def _check_contents(self) -> int:
        """The schema version of a file that is a drift ledger (or an empty database); refuse others."""
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if (tables or version) and not tables >= _LEDGER_TABLES:
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise LedgerError(
                f"{self.path} is an SQLite database of another application, not a drift ledger "
                f"(tables: {shown})",
                hint=f"drift will not write into it; {_OTHER_LEDGER}",
            )
        if not tables and not _writable(self.path):
            raise LedgerError(
                f"the ledger {self.path} is empty and read-only", hint=f"make it writable, or {_OTHER_LEDGER}"
            )
        return version

    # -- statements ------------------------------------------------------------------------------

    def _retrying(self, fn):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + _MAX_LOCK_WAIT_S
        delay = 0.05
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise  # _translated turns it into one clear line
                if time.monotonic() > deadline:
                    raise LedgerBusyError(
                        f"the ledger {self.path} stayed locked for {_MAX_LOCK_WAIT_S:.0f}s",
                        hint="another process holds a long write transaction; retry the run",
                    ) from exc
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 2.0)

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except DriftError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise _translate(exc, self.path, action) from exc

    @contextmanager
    def write(self) -> Iterator[SqliteLedgerConnection]:
        """Run the block in one IMMEDIATE transaction; commit on success, roll back on error."""
        if self._full is not None:
            raise self._full
        if self.read_only:
            raise LedgerError(
                f"the ledger {self.path} is open read-only (its file, folder or disk cannot be written)",
                hint=f"only reports can use it there; make it writable, or {_OTHER_LEDGER}",
            )
        with self._lock, self._translated("write"):
            self._retrying(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self._conn  # type: ignore[misc]
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._retrying(lambda: self._conn.execute("COMMIT"))
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise

    def query(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translated("read"):
            return self._retrying(lambda: self._conn.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_conn", None) is not None:
                self._conn.close()


def _set_pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Provenance keys are random UUIDs: inserts touch pages all over the B-trees,
    # so a roomy page cache (64 MiB, per connection) is what keeps them fast.
    conn.execute("PRAGMA cache_size=-65536")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < _FULL_BELOW
    except OSError:
        return False


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _check_file(path: Path) -> bool:
    """True if ``path`` holds something to open; refuse what cannot be a ledger."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise LedgerError(f"the ledger path {path} is a folder", hint=f"{_OTHER_LEDGER}") from None
    except OSError as exc:
        raise _translate(exc, path, "open") from exc
    if not head:
        if _size(Path(f"{path}-wal")):
            return True  # created by WAL before its first checkpoint: the content is in the -wal
        raise LedgerError(
            f"the ledger {path} is an empty file (0 bytes); drift will not start it over, because that "
            "would forget every vector's provenance and pay for every text again",
            hint="if it was truncated, restore it from a backup; if it is a new ledger whose first run was "
            "killed before it recorded anything, delete it and re-run",
        )
    if head != _SQLITE_MAGIC:
        raise LedgerError(
            f"{path} is not a drift ledger (not an SQLite database)",
            hint=f"drift will not write into it; {_OTHER_LEDGER}",
        )
    return True


def _create(path: Path, ensure_schema: SchemaStep) -> None:
    """Build a ledger in a scratch file and hard-link it into place, so ``path`` is never half-made.

    If another process linked its ledger first, ours is dropped and theirs is used.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _translate(exc, path, "create") from exc
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.creating")
    try:
        conn = sqlite3.connect(str(scratch), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            ensure_schema(conn, path)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()  # the last connection folds the WAL into the file and removes it
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass  # another process created it first
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            with contextlib.suppress(FileExistsError):  # a filesystem without hard links
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                with os.fdopen(fd, "wb") as out, open(scratch, "rb") as src:
                    out.write(src.read())
    except DriftError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise _translate(exc, path, "create") from exc
    finally:
        for leftover in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _translate(exc: BaseException, path: Path, action: str) -> DriftError:
    """One LedgerError/StorageFullError line for what SQLite or the OS said about the ledger file."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    if (
        getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or code == sqlite3.SQLITE_FULL
        or "disk is full" in text
        # SQLite reports a -shm or -wal it cannot grow as a generic I/O error
        or (isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in text and _nearly_full(path))
    ):
        return StorageFullError(
            f"the disk holding the ledger {path} is full; could not {action} it",
            hint="free space on that disk and retry: nothing was recorded half-way",
        )
    if getattr(exc, "errno", None) == errno.EROFS or code == sqlite3.SQLITE_READONLY or "readonly" in text:
        return LedgerError(
            f"the ledger {path} cannot be written (read-only): {text}",
            hint=f"make it writable, or {_OTHER_LEDGER}",
        )
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        return LedgerError(
            f"no permission to {action} the ledger {path}: {text}",
            hint=f"fix its permissions, or {_OTHER_LEDGER}",
        )
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return LedgerError(
            f"the ledger {path} is damaged: {text}",
            hint="restore it from a backup (sqlite3 ledger.db '.recover' can salvage what is readable); "
            "drift will not write into it",
        )
    return LedgerError(f"cannot {action} the ledger at {path}: {text}", hint=f"{_OTHER_LEDGER}")

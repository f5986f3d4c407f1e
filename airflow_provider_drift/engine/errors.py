"""One root error for the engine, with markers that say whether a retry can help.

Every error carries a ``hint``: the next thing the user should do. The Airflow
glue maps :class:`TerminalError` to ``AirflowFailException`` (no retry) and lets
:class:`TransientError` retry; the CLI maps both to an exit code and one line.
"""

from __future__ import annotations

from typing import Any


class DriftError(Exception):
    """Root of every error the engine raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        self.message = message
        self.hint = hint
        self.fields = fields
        super().__init__(f"{message} — {hint}" if hint else message)


class TerminalError(DriftError):
    """Retrying the same call will fail the same way: the input or config must change."""

    exit_code = 2


class TransientError(DriftError):
    """A retry may succeed: a service was down, slow, or rate-limited."""

    exit_code = 3


class ConfigError(TerminalError):
    """A bad argument, URI, connection or model name."""


class SourceError(TerminalError):
    """The source cannot be read as asked: missing column, bad path, bad rows."""


class InvalidRowsError(SourceError):
    """Rows that cannot be embedded (null key, null/empty text, duplicate key)."""


class ChangeFeedError(SourceError):
    """The Delta change data feed cannot serve the requested versions."""


class UnknownModelError(ConfigError):
    """A model the engine cannot resolve to a provider or a dimension."""


class SinkError(TerminalError):
    """The sink refused the operation in a way a retry will not fix."""


class DimensionMismatchError(SinkError):
    """The collection/table exists with another vector dimension."""


class SinkUnavailableError(TransientError):
    """The sink could not be reached or dropped the connection."""


class ProviderError(TerminalError):
    """The embedding provider rejected the request (auth, bad input, bad model)."""


class ProviderUnavailableError(TransientError):
    """The provider kept failing (429/5xx/timeouts) past the retry budget."""


class LedgerError(TerminalError):
    """The ledger is unreadable, from a newer schema, or inconsistent."""


class StorageFullError(TransientError):
    """A local disk drift writes to (the ledger, an embedded collection) has no room: free space, retry."""


class AdapterQualityError(TerminalError):
    """A fitted adapter scored below the quality gate."""


class MigrationError(TerminalError):
    """A migration step cannot run in the current migration state."""

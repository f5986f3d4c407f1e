"""One root error for the engine, with markers that say whether a retry can help.

Every error carries a ``hint``: the next thing the user should do. The Airflow
glue maps :class:`TerminalError` to ``AirflowFailException`` (no retry) and lets
:class:`TransientError` retry; the CLI maps both to an exit code and one line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

#: where an error is shown: option names in its hint are written the way that interface spells them
Interface = Literal["python", "cli", "airflow"]

#: ``{opt:name}`` or ``{opt:name=value}`` in a hint: an option, with ``value`` a Python literal
_OPTION = re.compile(r"\{opt:([A-Za-z_][A-Za-z0-9_]*)(?:=([^{}]*))?\}")

#: operator arguments whose names differ from the engine's keyword
AIRFLOW_ARGUMENT_NAMES: dict[str, str] = {"ledger": "ledger_conn_id"}


def render_hint(
    hint: str | None, interface: Interface = "python", *, names: Mapping[str, str] = {}
) -> str | None:
    """Write the options a hint names the way ``interface`` spells them.

    Hints are written once, with options marked as ``{opt:text_col}`` or
    ``{opt:on_invalid='skip'}``: Python and Airflow show ``text_col=`` and
    ``on_invalid='skip'``, the CLI ``--text-col`` and ``--on-invalid skip``.
    ``names`` maps an option to the interface's own name for it (the CLI's
    ``--from`` for ``from_model``; an operator's ``ledger_conn_id``).
    """
    if hint is None:
        return None

    def option(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if interface == "cli":
            flag = names.get(name) or "--" + name.replace("_", "-")
            if value is None or value == "True":
                return flag
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return f"{flag} {shlex.quote(value)}"
        default = AIRFLOW_ARGUMENT_NAMES.get(name, name) if interface == "airflow" else name
        return f"{names.get(name, default)}={'' if value is None else value}"

    return _OPTION.sub(option, hint)


class DriftError(Exception):
    """Root of every error the engine raises on purpose."""

    exit_code = 1
    #: set on a domain base: the class an instance of the bare base is created as
    _raised_as: type[DriftError] | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> DriftError:
        concrete = cls.__dict__.get("_raised_as")
        return super().__new__(concrete or cls, *args)

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        self.message = message
        #: the hint with option names marked (``{opt:text_col}``): see :func:`render_hint`
        self.hint_template = hint
        self.hint = render_hint(hint)
        self.fields = fields
        super().__init__(f"{message} — {self.hint}" if hint else message)


class TerminalError(DriftError):
    """Retrying the same call will fail the same way: the input or config must change."""

    exit_code = 2


class TransientError(DriftError):
    """A retry may succeed: a service was down, slow, or rate-limited."""

    exit_code = 3


class ConfigError(TerminalError):
    """A bad argument, URI, connection or model name."""


class UnknownModelError(ConfigError):
    """A model the engine cannot resolve to a provider or a dimension."""


# -- domains --------------------------------------------------------------------------------------
# Each port has a domain base, so a caller can catch every failure of one service
# (``except SinkError``), and concrete classes that carry the terminal or transient
# marker. Raising a domain base itself gives its terminal member (as ``OSError(ENOENT, ...)``
# gives ``FileNotFoundError``): a refusal is terminal unless it says otherwise.


class SourceError(DriftError):
    """Any failure to read the source: raised as such, it is :class:`TerminalSourceError`."""


class TerminalSourceError(SourceError, TerminalError):
    """The source cannot be read as asked: missing column, bad path, bad rows."""


class SourceUnavailableError(SourceError, TransientError):
    """The source's storage could not be reached; a retry may read it."""


class InvalidRowsError(TerminalSourceError):
    """Rows that cannot be embedded (null key, null/empty text, duplicate key)."""


class ChangeFeedError(TerminalSourceError):
    """The Delta change data feed cannot serve the requested versions."""


class SinkError(DriftError):
    """Any failure of the vector sink: raised as such, it is :class:`TerminalSinkError`."""


class TerminalSinkError(SinkError, TerminalError):
    """The sink refused the operation in a way a retry will not fix."""


class SinkUnavailableError(SinkError, TransientError):
    """The sink could not be reached or dropped the connection."""


class DimensionMismatchError(TerminalSinkError):
    """The collection/table exists with another vector dimension."""


class ProviderError(DriftError):
    """Any failure of the embedding provider: raised as such, it is :class:`TerminalProviderError`."""


class TerminalProviderError(ProviderError, TerminalError):
    """The embedding provider rejected the request (auth, bad input, bad model)."""


class ProviderUnavailableError(ProviderError, TransientError):
    """The provider kept failing (429/5xx/timeouts) past the retry budget."""


class LedgerError(DriftError):
    """Any failure of the ledger: raised as such, it is :class:`TerminalLedgerError`."""


class TerminalLedgerError(LedgerError, TerminalError):
    """The ledger is unreadable, from a newer schema, or inconsistent."""


class LedgerBusyError(LedgerError, TransientError):
    """Another process held the ledger's write lock past the wait budget; a retry may get it."""


class LedgerUnavailableError(LedgerError, TransientError):
    """The ledger's database server could not be reached or dropped the connection."""


class StorageFullError(TransientError):
    """A local disk drift writes to (the ledger, an embedded collection) has no room: free space, retry."""


class AdapterQualityError(TerminalError):
    """A fitted adapter scored below the quality gate."""


class MigrationError(TerminalError):
    """A migration step cannot run in the current migration state."""


SourceError._raised_as = TerminalSourceError
SinkError._raised_as = TerminalSinkError
ProviderError._raised_as = TerminalProviderError
LedgerError._raised_as = TerminalLedgerError

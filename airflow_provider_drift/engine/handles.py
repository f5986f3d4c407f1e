"""Sinks and ledgers a call was lent (left open for the caller) or opened itself (closed when it ends).

Every engine entry point takes either a URI/path or an open object. Entering
what it opens into one ``ExitStack`` closes exactly those, in reverse order,
also when a later open fails — a half-started call never keeps a sink's lock
or a ledger connection.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

from .ledger import Ledger
from .sinks import open_sink
from .sinks.base import Sink


def sink_for(sink: str | Sink, stack: ExitStack, options: dict[str, Any] | None = None) -> Sink:
    """The caller's Sink as it is, or one opened from a URI and closed with ``stack``."""
    if isinstance(sink, Sink):
        return sink
    return stack.enter_context(open_sink(sink, **(options or {})))


def ledger_for(ledger: Ledger | str | os.PathLike[str] | None, stack: ExitStack) -> Ledger:
    """The caller's Ledger as it is, or one opened from a path (None: default) and closed with ``stack``."""
    if isinstance(ledger, Ledger):
        return ledger
    return stack.enter_context(Ledger(ledger))

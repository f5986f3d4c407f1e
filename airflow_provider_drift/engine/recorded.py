"""recorded_run(): a pipeline's ledger run, opened first and always closed with its outcome.

Every pipeline (embed, watch, the Batch API path, migrate, erase) records
itself the same way: the run is written as ``running`` before any work (so a
crash leaves a trace), and closed as ``success`` or ``failed`` with its final
record, its duration, and the error cut to the same length — whatever the
pipeline does in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .ledger import Ledger

log = logging.getLogger(__name__)

#: the longest error text a run keeps (the whole traceback is in the task log)
MAX_ERROR_CHARS = 2000


class RunRecord(Protocol):
    run_id: str
    status: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=RunRecord)


@dataclass(frozen=True)
class RunStart:
    """What the ledger's ``runs`` row says about a run before it does anything."""

    kind: str
    model: str | None = None
    sink: str | None = None
    source: str | None = None
    params: dict[str, Any] | None = None
    run_context: dict[str, Any] | None = None


def describe_error(exc: BaseException) -> str:
    """The error as a run records it: ``Type: message``, cut to :data:`MAX_ERROR_CHARS`."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


@contextmanager
def recorded_run(
    ledger: Ledger,
    record: R,
    start: RunStart | None,
    *,
    started: float | None = None,
    leave_open: bool = False,
    details: Callable[[R], dict[str, Any]] | None = None,
) -> Iterator[R]:
    """Open a ledger run for ``record`` (sets ``record.run_id``), run the block, close the run.

    :param start: the run to open; None when ``record.run_id`` names a run opened
        earlier (the Batch API: submitted in one task, completed in another).
    :param started: ``time.monotonic()`` when the call began (default: now).
    :param leave_open: on success, leave the run ``running`` (a submitted Batch API job).
    :param details: what the ledger stores as the run's record (default ``record.to_dict()``).
    """
    begun = time.monotonic() if started is None else started
    render = details or (lambda r: r.to_dict())
    if start is not None:
        record.run_id = ledger.start_run(
            kind=start.kind,
            model=start.model,
            sink=start.sink,
            source=start.source,
            run_context=start.run_context,
            params=start.params,
        )
    try:
        yield record
    except BaseException as exc:
        record.status = "failed"
        record.duration_s = round(time.monotonic() - begun, 3)
        try:
            close_failed(ledger, record, describe_error(exc), details=render(record))
        except Exception as unrecorded:  # e.g. the ledger's disk is full: raise the run's own error
            log.warning("could not record run %s as failed: %s", record.run_id, unrecorded)
        raise
    record.duration_s = round(time.monotonic() - begun, 3)
    if not leave_open:
        ledger.finish_run(record.run_id, render(record))


def close_failed(
    ledger: Ledger, record: RunRecord, error: str, *, details: dict[str, Any] | None = None
) -> None:
    """Close ``record``'s run as failed with ``error`` (also a run given up on outside its call)."""
    record.status = "failed"
    ledger.finish_run(
        record.run_id,
        record.to_dict() if details is None else details,
        status="failed",
        error=error[:MAX_ERROR_CHARS],
    )

"""Map engine errors to Airflow's retry semantics — the one place this decision is made.

Terminal errors (bad input, bad config, a missing connection, a dimension
mismatch) fail the task at once: retrying cannot help and would only repeat
the failure and its cost. Transient errors (a sink or provider that is down or
rate-limited) propagate unchanged so the task's ``retries`` apply.

A terminal failure reads as one line in the task log, hint first (what to do
beats what went wrong when the UI cuts long lines off to the right). The
engine's own traceback is dropped from the failure — Airflow already prints
the traceback of the exception the task raises — and where the error was
raised is logged once, on one line.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_drift.engine.errors import DriftError, TerminalError, render_hint

#: under airflow.task, so the line lands in the task log beside the operator's own lines
LOGGER_NAME = f"airflow.task.operators.{__name__}"


def failure_line(exc: DriftError) -> str:
    """One line for the task log: ``drift <ErrorType>: <hint> — <message>``."""
    head = f"drift {type(exc).__name__}: "
    hint = render_hint(exc.hint_template, "airflow")  # options as the operators spell them
    return head + (f"{hint} — {exc.message}" if hint else exc.message)


def to_airflow_error(exc: BaseException) -> BaseException:
    """The exception the task should raise for ``exc``: AirflowFailException for terminal errors."""
    if isinstance(exc, TerminalError):
        fail = AirflowFailException(failure_line(exc))
        fail.__suppress_context__ = True  # as `raise ... from None`: one traceback, not two
        return fail
    return exc


def _origin(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


@contextmanager
def engine_errors() -> Iterator[None]:
    """Run the block; a terminal engine error becomes a one-line AirflowFailException (no retry)."""
    try:
        yield
    except DriftError as exc:
        mapped = to_airflow_error(exc)
        if mapped is exc:
            raise
        import structlog  # what the task's own loggers are, so the line reaches the task log

        fields = f" {exc.fields}" if exc.fields else ""
        structlog.get_logger(LOGGER_NAME).info("%s raised at %s%s", type(exc).__name__, _origin(exc), fields)
        raise mapped from None

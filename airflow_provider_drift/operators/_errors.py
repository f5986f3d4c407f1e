"""Map engine errors to Airflow's retry semantics — the one place this decision is made.

Terminal errors (bad input, bad config, a missing connection, a dimension
mismatch) fail the task at once: retrying cannot help and would only repeat
the failure and its cost. Transient errors (a sink or provider that is down or
rate-limited) propagate unchanged so the task's ``retries`` apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_drift.engine.errors import DriftError, TerminalError


def to_airflow_error(exc: BaseException) -> BaseException:
    """The exception the task should raise for ``exc``: AirflowFailException for terminal errors."""
    if isinstance(exc, TerminalError):
        fail = AirflowFailException(f"{type(exc).__name__}: {exc}")
        fail.__cause__ = exc
        return fail
    return exc


@contextmanager
def engine_errors() -> Iterator[None]:
    """Run the block; a terminal engine error becomes AirflowFailException (no retry)."""
    try:
        yield
    except DriftError as exc:
        mapped = to_airflow_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc

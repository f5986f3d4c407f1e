"""The one shape of a drift trigger's events, built on the triggerer side and checked on the task side.

Every drift trigger fires ``{"status": ...}``; an engine error becomes
``{"status": "error", "message", "error_type", "terminal"}``. The task that
resumes checks the event here: a status its trigger never sends, or a
malformed event, fails loudly; an error event fails without retry when
terminal and is left to the task's retries otherwise.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


def error_event(exc: BaseException) -> dict[str, Any]:
    """The event a trigger fires for an engine error: terminal errors will not be retried."""
    from airflow_provider_drift.engine.errors import TransientError

    return {
        "status": "error",
        "message": str(exc),
        "error_type": type(exc).__name__,
        "terminal": not isinstance(exc, TransientError),
    }


def checked_event(
    event: Any, *, trigger: str, statuses: Collection[str], requires: Collection[str] = ()
) -> dict[str, Any]:
    """Return a trigger's event if its task may act on it; raise for errors and anything unexpected.

    :param trigger: the trigger's class name, for the message.
    :param statuses: the statuses this trigger sends.
    :param requires: keys a ``success`` event must carry.
    """
    if not isinstance(event, dict) or event.get("status") not in statuses:
        raise AirflowException(f"{trigger} sent an event this task does not understand: {event!r}")
    if event["status"] == "error":
        message = f"{event.get('error_type', 'error')}: {event.get('message', '')}"
        raise AirflowFailException(message) if event.get("terminal") else AirflowException(message)
    missing = [k for k in requires if event.get(k) is None] if event["status"] == "success" else []
    if missing:
        raise AirflowException(f"{trigger} sent a success event without the {', '.join(missing)}: {event!r}")
    return event

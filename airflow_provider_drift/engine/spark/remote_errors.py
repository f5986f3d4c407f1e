"""Carry an engine error from a Spark executor to the driver with its class, message and hint intact.

Spark reports a failed task as one long Java exception whose text contains
the Python traceback. An executor therefore raises (or returns) the engine
error as one marked JSON line, and the driver finds that line and raises the
same class again — so a terminal error stays terminal (no Airflow retry, CLI
exit 2) and a transient one stays transient, wherever it happened.
"""

from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..errors import DriftError, TransientError

MARKER = "DRIFT-ERROR "


class SparkJobError(TransientError):
    """A Spark job failed for a reason the engine did not raise itself (a lost executor, a bug)."""


def encode(exc: BaseException) -> str:
    """One line: the marker and the error as JSON (class name, message, hint)."""
    if isinstance(exc, DriftError):
        body = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    else:
        body = {"type": "SparkJobError", "message": f"{type(exc).__name__}: {exc}", "hint": None}
    return MARKER + json.dumps(body)


class RemoteError(RuntimeError):
    """Raised on an executor so Spark fails (and may retry) the task; its text carries the engine error."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(encode(exc))


def decode(text: str, *, where: str) -> DriftError | None:
    """The engine error a marked line in ``text`` describes, re-raised as its own class; else None."""
    start = text.find(MARKER)
    if start < 0:
        return None
    line = text[start + len(MARKER) :].splitlines()[0]
    try:
        body: dict[str, Any] = json.JSONDecoder().raw_decode(line)[0]
    except ValueError:
        return None
    cls = _error_classes().get(str(body.get("type")), SparkJobError)
    return cls(f"{body.get('message')} ({where})", hint=body.get("hint"))


def from_spark_failure(exc: BaseException, *, where: str) -> DriftError:
    """The engine error behind a failed Spark action, or a transient SparkJobError naming its first line."""
    text = str(exc)
    found = decode(text, where=where)
    if found is not None:
        return found
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return SparkJobError(
        f"the Spark job failed ({where}): {first[:500]}",
        hint="see the Spark driver and executor logs; a lost executor or a full disk may succeed on retry",
    )


def _error_classes() -> dict[str, type[DriftError]]:
    found: dict[str, type[DriftError]] = {"SparkJobError": SparkJobError}
    todo: list[type[DriftError]] = [DriftError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, DriftError):
            found.setdefault(name, obj)
    return found

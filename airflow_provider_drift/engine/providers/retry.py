"""When to retry a provider call, and how long to wait before the next try.

Exponential backoff with *full* jitter (a uniform wait in ``[0, cap]``) so
that many workers throttled together do not retry together; a server's
``Retry-After`` / ``retry-after-ms`` wins over the computed wait because the
server knows when it will take work again. Every call has a budget of
retries *and* of seconds spent waiting, so a run fails in bounded time.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ProviderUnavailableError

T = TypeVar("T")

#: HTTP statuses worth another try: timeout, conflict/lock, rate limit, server errors
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 8
    #: seconds of waiting one call may spend across all its retries
    max_total_wait_s: float = 300.0
    base_s: float = 0.5
    cap_s: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter wait before retry number ``attempt`` (0-based)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2.0**attempt)))


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or a date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class RetryDecision:
    """What a failed attempt means: retry (and the server's wish, if any) or give up."""

    retry: bool
    retry_after_s: float | None = None
    reason: str = ""


def run_with_retries(
    call: Callable[[], T],
    *,
    classify: Callable[[BaseException], RetryDecision | None],
    policy: RetryPolicy,
    rng: random.Random,
    abort: threading.Event | None = None,
    on_retry: Callable[[int, float, str], None] | None = None,
    what: str = "the provider call",
) -> T:
    """Run ``call`` until it succeeds, the error is not retryable, or the budget is spent.

    ``classify`` maps an exception to a decision, or None to re-raise it
    unchanged (terminal errors are the classifier's business). ``abort`` lets a
    sibling request that failed for good stop this one during its wait.
    """
    waited = 0.0
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            decision = classify(exc)
            if decision is None or not decision.retry:
                raise
            if attempt >= policy.max_retries:
                raise ProviderUnavailableError(
                    f"{what} still failing after {attempt + 1} attempts: {decision.reason}",
                    hint="the provider is overloaded or down; re-run later (what was written is kept), "
                    "or raise max_retries / max_total_wait_s",
                    attempts=attempt + 1,
                ) from exc
            delay = decision.retry_after_s
            if delay is None:
                delay = policy.backoff(attempt, rng)
            if waited + delay > policy.max_total_wait_s:
                asked = " (as the server asked)" if decision.retry_after_s is not None else ""
                raise ProviderUnavailableError(
                    f"{what} failed ({decision.reason}) and waiting {delay:.1f}s more{asked} would pass the "
                    f"{policy.max_total_wait_s:.0f}s wait budget after {attempt + 1} attempts",
                    hint="re-run later (what was written is kept), or raise max_total_wait_s",
                    attempts=attempt + 1,
                ) from exc
            if on_retry is not None:
                on_retry(attempt, delay, decision.reason)
            if abort is not None:
                if abort.wait(delay):
                    raise ProviderUnavailableError(
                        f"{what} abandoned: another request of the same batch failed for good",
                        hint="see the other request's error",
                    ) from exc
            else:
                time.sleep(delay)
            waited += delay
            attempt += 1

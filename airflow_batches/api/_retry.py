"""Retry policy as pure functions: no I/O, no clock, no sleeping.

The client asks two questions after a failed attempt: *should I retry?* and *how long do I
wait?*. Both are answered here from the status code and the response headers alone, so they
can be tested exhaustively.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from airflow_batches.api._errors import (
    APIConnectionError,
    APIStatusError,
    NotFoundError,
    ResponseValidationError,
)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

NOT_FOUND_GRACE = 300.0
"""Seconds after submission during which a 404 is taken for the API's read-after-create lag."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    The delay before retry ``n`` (0-based) is ``min(initial_delay * 2**n, max_delay)`` reduced
    by up to ``jitter`` (a fraction), unless the server named a wait with ``retry-after-ms`` or
    ``retry-after`` within ``(0, max_retry_after]`` seconds: that wait is used as given.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")


def should_retry(status: int | None, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a failed attempt is worth repeating.

    ``status`` is None for a connection error or timeout. ``x-should-retry`` from the server
    overrides the status table either way.
    """
    if headers is not None:
        verdict = _header(headers, "x-should-retry")
        if verdict is not None:
            if verdict.strip().lower() == "true":
                return True
            if verdict.strip().lower() == "false":
                return False
    if status is None:
        return True
    return status in RETRYABLE_STATUSES


def retry_after_seconds(
    headers: Mapping[str, str] | None, *, now: datetime | None = None
) -> float | None:
    """The wait the server asked for, in seconds, or None if it named none (or nonsense).

    Reads ``retry-after-ms`` first, then ``retry-after`` as seconds or an HTTP date.
    """
    if not headers:
        return None
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return (when - current).total_seconds()


def retry_delay(
    attempt: int,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
    *,
    rand: Callable[[], float] = random.random,
    now: datetime | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    policy = policy or RetryPolicy()
    asked = retry_after_seconds(headers, now=now)
    if asked is not None and 0 < asked <= policy.max_retry_after:
        return asked
    backoff = min(policy.initial_delay * (2.0**attempt), policy.max_delay)
    return max(0.0, backoff * (1 - policy.jitter * rand()))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive already; a plain dict from a test may not be.
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name:
                return item
    return value


def is_transient(exc: BaseException, *, now: float, not_found_grace_until: float | None) -> bool:
    """Whether a failed call is worth another try, as opposed to failing now.

    A 404 shortly after creation is transient: the API has been seen to answer 404 for a batch
    a second after creating it. A body that is not a batch (a proxy's error page) is too.
    """
    if isinstance(exc, APIConnectionError | ResponseValidationError):
        return True
    if isinstance(exc, NotFoundError):
        return not_found_grace_until is not None and now < not_found_grace_until
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES

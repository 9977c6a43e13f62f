"""What an answer means, with no I/O: a success body parsed into its model, an error answer
turned into its exception, and after a failed attempt, whether to wait and send it again or
raise. Both client shells ask these through ``_base._BaseClient``.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

import httpx
import pydantic

from airflow_batches.api._errors import (
    APIStatusError,
    BatchesError,
    ResponseValidationError,
    connection_error_from,
    status_error_class,
)
from airflow_batches.api._models import ErrorBody, problems, safe_request_id
from airflow_batches.api._retry import RetryPolicy, retry_after_seconds, retry_delay, should_retry

__all__ = ["Outcome", "parse_answer", "paused_gc", "retry_or_raise", "status_error"]

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
Outcome = httpx.Response | httpx.TransportError
"""A failed attempt: an error answer whose body has been read, or the transport failure."""


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while an answer is parsed (one synchronous call).

    A list page builds a thousand batches in one go; a young collection in the middle of it
    finds them all alive and promotes them, and each promotion counts towards the next full
    pass over the whole process. On a triggerer that re-reads 10,000 batches a second this
    made a full pass (0.25 s) about every second; with the collector paused for the parse,
    about one every four seconds (docs/performance.md). Collections are only put off: the next
    allocation after the parse runs what fell due. A collector someone else turned off stays
    off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_answer(model: type[ModelT], response: httpx.Response) -> ModelT:
    """A success body as ``model``; else ``ResponseValidationError`` naming what is wrong
    (never the body)."""
    try:
        with paused_gc():
            return model.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        raise ResponseValidationError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code} with a body that is not a {model.__name__}: "
            f"{problems(exc)}",
            request_id=safe_request_id(response.headers.get("request-id")),
        ) from None


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer whose body has been read."""
    error_type: str | None = None
    message = ""
    request_id = safe_request_id(response.headers.get("request-id"))
    try:
        body = ErrorBody.model_validate_json(response.content)
    except pydantic.ValidationError:
        text = response.content[:500].decode("utf-8", "replace").strip()
        message = text or response.reason_phrase or "error"
    else:
        error_type = body.error.type
        message = body.error.message
        request_id = request_id or body.request_id
    cls = status_error_class(response.status_code)
    return cls(
        message,
        status_code=response.status_code,
        error_type=error_type,
        request_id=request_id,
        retry_after=retry_after_seconds(response.headers),
        context=f"{response.request.method} {response.request.url.path}",
    )


def retry_or_raise(
    attempt: int,
    outcome: Outcome,
    *,
    request: httpx.Request,
    policy: RetryPolicy,
    max_retries: int | None = None,
    rand: Callable[[], float] = random.random,
    now: datetime | None = None,
) -> float | BatchesError:
    """What to do after failed attempt number ``attempt`` (0 for the first) of ``request``.

    Returns the seconds to wait before sending it again, or the exception to raise: once
    ``max_retries`` (default: the policy's) retries are spent, or when the failure is not worth
    repeating (``should_retry``). No I/O, no clock (``now`` dates a ``retry-after`` HTTP date),
    no sleeping.
    """
    if isinstance(outcome, httpx.TransportError):
        error: BatchesError = connection_error_from(outcome, request)
        status, headers = None, None
    else:
        error = status_error(outcome)
        status, headers = outcome.status_code, outcome.headers
    limit = policy.max_retries if max_retries is None else max_retries
    if attempt >= limit or not should_retry(status, headers):
        return error
    return retry_delay(attempt, headers, policy, rand=rand, now=now)

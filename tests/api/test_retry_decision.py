"""``retry_or_raise``: the one decision after a failed attempt, with no I/O and no sleeping."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    retry_or_raise,
)
from tests.api.fakes import API_KEY

URL = "https://api.batches.test/v1/messages/batches/msgbatch_01"
POLICY = RetryPolicy(max_retries=3, initial_delay=0.5, max_delay=8.0, jitter=0.25)


def request() -> httpx.Request:
    return httpx.Request("GET", URL, headers={"x-api-key": API_KEY})


def answer(status: int, error_type: str = "api_error", **headers: str) -> httpx.Response:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type, "message": f"said {status}"},
        "request_id": "req_body",
    }
    return httpx.Response(status, json=body, headers=headers, request=request())


def decide(attempt: int, outcome: httpx.Response | httpx.TransportError, **kwargs: Any) -> Any:
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("rand", lambda: 0.0)
    return retry_or_raise(attempt, outcome, request=request(), **kwargs)


@pytest.mark.parametrize(("attempt", "wait"), [(0, 0.5), (1, 1.0), (2, 2.0)])
def test_a_retryable_status_waits_the_backoff(attempt: int, wait: float) -> None:
    assert decide(attempt, answer(503)) == wait


def test_the_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=8.0, jitter=0.25)
    assert decide(6, answer(500), policy=policy) == 8.0
    assert decide(6, answer(500), policy=policy, rand=lambda: 1.0) == 6.0


def test_once_the_retries_are_spent_it_is_the_exception() -> None:
    verdict = decide(3, answer(529, "overloaded_error", **{"request-id": "req_h"}))
    assert type(verdict) is OverloadedError
    assert verdict.status_code == 529
    assert verdict.error_type == "overloaded_error"
    assert verdict.request_id == "req_h"
    assert verdict.context == "GET /v1/messages/batches/msgbatch_01"


def test_max_retries_overrides_the_policy() -> None:
    assert isinstance(decide(0, answer(503), max_retries=0), ServiceUnavailableError)
    assert decide(5, answer(503), max_retries=6) == 8.0


@pytest.mark.parametrize(
    ("status", "cls"), [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError)]
)
def test_a_client_error_is_raised_at_once(status: int, cls: type[Exception]) -> None:
    verdict = decide(0, answer(status, "some_error"))
    assert isinstance(verdict, cls)
    assert verdict.request_id == "req_body"  # from the body when no header names one


def test_retry_after_is_the_wait_and_is_kept_on_the_error() -> None:
    assert decide(0, answer(429, "rate_limit_error", **{"retry-after": "7"})) == 7.0
    assert decide(0, answer(529, "overloaded_error", **{"retry-after-ms": "1500"})) == 1.5
    spent = decide(3, answer(429, "rate_limit_error", **{"retry-after": "7"}))
    assert isinstance(spent, RateLimitError)
    assert spent.retry_after == 7.0


def test_an_http_date_is_read_against_the_given_now() -> None:
    now = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert decide(0, answer(503, **{"retry-after": later}), now=now) == 30.0


def test_x_should_retry_overrides_the_status() -> None:
    assert isinstance(decide(0, answer(529, **{"x-should-retry": "false"})), OverloadedError)
    assert decide(0, answer(400, **{"x-should-retry": "true"})) == 0.5
    assert isinstance(decide(3, answer(400, **{"x-should-retry": "true"})), BadRequestError)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (httpx.ConnectError("refused"), APIConnectionError),
        (httpx.RemoteProtocolError("peer closed connection"), APIConnectionError),
        (httpx.ReadTimeout("slow"), APITimeoutError),
    ],
)
def test_transport_errors_are_retried_then_mapped(
    error: httpx.TransportError, cls: type[APIConnectionError]
) -> None:
    assert decide(0, error) == 0.5
    assert decide(2, error) == 2.0
    verdict = decide(3, error)
    assert type(verdict) is cls
    assert verdict.method == "GET"
    assert verdict.url == URL
    assert type(error).__name__ in verdict.message


def test_the_exception_holds_no_key_and_pickles() -> None:
    for verdict in (decide(3, httpx.ConnectError("refused")), decide(3, answer(503))):
        assert isinstance(verdict, Exception)
        for text in (str(verdict), repr(verdict), repr(vars(verdict))):
            assert API_KEY not in text
        again = pickle.loads(pickle.dumps(verdict))
        assert type(again) is type(verdict)
        assert str(again) == str(verdict)


def test_the_decision_is_pure() -> None:
    # The same attempt and outcome give the same verdict, and the outcome is left as it was.
    outcome = answer(503, **{"retry-after": "2"})
    assert [decide(1, outcome) for _ in range(3)] == [2.0, 2.0, 2.0]
    assert outcome.status_code == 503
    assert outcome.json()["error"]["type"] == "api_error"

"""Retries through the clients: which answers are retried, how long each wait is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_batches.api import (
    APIStatusError,
    OverloadedError,
    RetryPolicy,
    status_error_class,
)
from tests.api.fakes import Driver, FakeAPI, batch_json, error_reply, reply

OK = reply(200, batch_json())


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses_are_retried(connect: Callable[..., Driver], status: int) -> None:
    api = FakeAPI(error_reply(status), OK)
    client = connect(api)
    assert client.retrieve("msgbatch_01").id == "msgbatch_01"
    assert len(api.requests) == 2
    assert len(client.sleeps) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
def test_client_errors_are_never_retried(connect: Callable[..., Driver], status: int) -> None:
    api = FakeAPI(default=error_reply(status, "some_error"))
    client = connect(api, max_retries=5)
    with pytest.raises(status_error_class(status)):
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 1
    assert client.sleeps == []


@pytest.mark.parametrize("max_retries", [0, 1, 4])
def test_attempts_are_configurable(connect: Callable[..., Driver], max_retries: int) -> None:
    api = FakeAPI(default=error_reply(529, "overloaded_error"))
    client = connect(api, max_retries=max_retries)
    with pytest.raises(OverloadedError):
        client.retrieve("msgbatch_01")
    assert len(api.requests) == max_retries + 1
    assert len(client.sleeps) == max_retries


def test_default_is_two_retries(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(default=error_reply(500))
    with pytest.raises(APIStatusError):
        connect(api).retrieve("msgbatch_01")
    assert len(api.requests) == 3


def test_backoff_grows_and_is_capped(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(default=error_reply(503))
    policy = RetryPolicy(max_retries=6, jitter=0.0)
    client = connect(api, retry=policy)
    with pytest.raises(APIStatusError):
        client.retrieve("msgbatch_01")
    assert client.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_backoff_has_jitter(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(default=error_reply(503))
    client = connect(api, max_retries=5)
    with pytest.raises(APIStatusError):
        client.retrieve("msgbatch_01")
    for attempt, wait in enumerate(client.sleeps):
        full = min(0.5 * 2**attempt, 8.0)
        assert 0.75 * full <= wait <= full


def test_max_retries_overrides_the_policy(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(default=error_reply(503))
    client = connect(api, retry=RetryPolicy(max_retries=1, jitter=0.0), max_retries=3)
    with pytest.raises(APIStatusError):
        client.retrieve("msgbatch_01")
    assert client.sleeps == [0.5, 1.0, 2.0]


def test_retry_after_seconds_is_honoured(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        error_reply(429, "rate_limit_error", headers={"retry-after": "7"}),
        error_reply(429, "rate_limit_error", headers={"retry-after": "0.25"}),
        OK,
    )
    client = connect(api)
    client.retrieve("msgbatch_01")
    assert client.sleeps == [7.0, 0.25]


def test_retry_after_ms_is_honoured(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        error_reply(
            529, "overloaded_error", headers={"retry-after-ms": "1500", "retry-after": "9"}
        ),
        OK,
    )
    client = connect(api)
    client.retrieve("msgbatch_01")
    assert client.sleeps == [1.5]


def test_retry_after_http_date_is_honoured(connect: Callable[..., Driver]) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    api = FakeAPI(error_reply(503, headers={"retry-after": format_datetime(when, usegmt=True)}), OK)
    client = connect(api)
    client.retrieve("msgbatch_01")
    (wait,) = client.sleeps
    # HTTP dates have whole seconds, and a little time passes before the answer is read.
    assert 25.0 <= wait <= 30.0


def test_a_retry_after_beyond_a_minute_falls_back_to_backoff(
    connect: Callable[..., Driver],
) -> None:
    api = FakeAPI(error_reply(429, "rate_limit_error", headers={"retry-after": "3600"}), OK)
    client = connect(api, retry=RetryPolicy(jitter=0.0))
    client.retrieve("msgbatch_01")
    assert client.sleeps == [0.5]


def test_x_should_retry_false_stops_a_retryable_status(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(529, "overloaded_error", headers={"x-should-retry": "false"}), OK)
    client = connect(api)
    with pytest.raises(OverloadedError):
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 1
    assert client.sleeps == []


def test_x_should_retry_true_retries_any_status(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(400, "invalid_request_error", headers={"x-should-retry": "true"}), OK)
    client = connect(api)
    assert client.retrieve("msgbatch_01").id == "msgbatch_01"
    assert len(api.requests) == 2


def test_x_should_retry_true_still_respects_max_retries(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        default=error_reply(400, "invalid_request_error", headers={"x-should-retry": "true"})
    )
    client = connect(api, max_retries=2)
    with pytest.raises(APIStatusError):
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 3


def test_a_retry_sends_the_same_request_again(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(500), reply(200, batch_json("msgbatch_7", "canceling")))
    connect(api).cancel("msgbatch_7")
    first, second = api.requests
    assert (first.method, str(first.url)) == (second.method, str(second.url))
    assert dict(first.headers) == dict(second.headers)


def test_retries_are_logged_without_noise(
    connect: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeAPI(error_reply(529, "overloaded_error", request_id="req_busy"), OK)
    with caplog.at_level("WARNING", logger="airflow_batches"):
        connect(api).retrieve("msgbatch_01")
    (record,) = [r for r in caplog.records if r.name.startswith("airflow_batches")]
    assert "529" in record.getMessage()
    assert "req_busy" in record.getMessage()
    assert "retry 1" in record.getMessage()

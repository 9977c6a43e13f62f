"""The retry policy as pure functions: no client, no clock, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_batches.api import RetryPolicy, retry_after_seconds, retry_delay, should_retry

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses(status: int) -> None:
    assert should_retry(status) is True
    assert should_retry(status, {}) is True


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 413, 422, 418, 501])
def test_statuses_never_retried(status: int) -> None:
    # 501 is the one 5xx that is not in the table: "not implemented" will not change.
    assert should_retry(status) is False


def test_connection_errors_are_retried() -> None:
    assert should_retry(None) is True
    assert should_retry(None, None) is True


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (400, "true", True),
        (404, "TRUE", True),
        (413, " true ", True),
        (529, "false", False),
        (429, "False", False),
        (None, "false", False),
        (500, "maybe", True),  # nonsense is ignored: the table decides
        (400, "maybe", False),
        (400, "", False),
    ],
)
def test_x_should_retry_overrides_the_table(
    status: int | None, header: str, expected: bool
) -> None:
    assert should_retry(status, {"x-should-retry": header}) is expected


def test_header_names_are_case_insensitive_in_plain_dicts() -> None:
    assert should_retry(400, {"X-Should-Retry": "true"}) is True
    assert retry_after_seconds({"Retry-After-Ms": "250"}) == 0.25
    assert retry_after_seconds({"RETRY-AFTER": "7"}) == 7.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "20.5"}, 0.0205),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "100", "retry-after": "30"}, 0.1),  # ms wins
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),  # bad ms falls back
        ({"retry-after": "whenever"}, None),
        ({}, None),
        ({"other": "1"}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers, now=NOW) == expected


def test_retry_after_none_headers() -> None:
    assert retry_after_seconds(None) is None


def test_retry_after_http_date() -> None:
    when = NOW + timedelta(seconds=42)
    headers = {"retry-after": format_datetime(when, usegmt=True)}
    assert headers["retry-after"].endswith("GMT")
    assert retry_after_seconds(headers, now=NOW) == 42.0


def test_retry_after_http_date_in_the_past_is_negative() -> None:
    headers = {"retry-after": format_datetime(NOW - timedelta(seconds=5), usegmt=True)}
    assert retry_after_seconds(headers, now=NOW) == -5.0


def test_http_date_without_zone_is_read_as_utc() -> None:
    assert retry_after_seconds({"retry-after": "Sun, 01 Nov 2026 12:00:10"}, now=NOW) == 10.0


# --- delays ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0)]
)
def test_exponential_backoff_capped_without_jitter(attempt: int, expected: float) -> None:
    assert retry_delay(attempt, rand=lambda: 0.0) == expected


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 10])
def test_jitter_takes_off_at_most_a_quarter(attempt: int) -> None:
    full = min(0.5 * 2**attempt, 8.0)
    assert retry_delay(attempt, rand=lambda: 1.0) == pytest.approx(full * 0.75)
    assert retry_delay(attempt, rand=lambda: 0.5) == pytest.approx(full * 0.875)


def test_jitter_uses_the_injected_random_source() -> None:
    calls: list[int] = []

    def rand() -> float:
        calls.append(1)
        return 0.4

    assert retry_delay(1, rand=rand) == pytest.approx(1.0 * (1 - 0.25 * 0.4))
    assert calls == [1]


def test_default_random_source_stays_within_bounds() -> None:
    for _ in range(200):
        assert 0.375 <= retry_delay(0) <= 0.5


def test_custom_policy() -> None:
    policy = RetryPolicy(max_retries=5, initial_delay=1.0, max_delay=3.0, jitter=0.0)
    assert [retry_delay(n, policy=policy) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "60"}, 60.0),
        ({"retry-after": "0.001"}, 0.001),
    ],
)
def test_server_named_wait_is_used_as_given(headers: dict[str, str], expected: float) -> None:
    # No jitter, no cap at max_delay: the server knows best within (0, 60] seconds.
    assert retry_delay(4, headers, rand=lambda: 1.0) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "0"},
        {"retry-after": "-3"},
        {"retry-after": "61"},
        {"retry-after": "3600"},
        {"retry-after-ms": "0"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
    ],
)
def test_out_of_range_server_waits_fall_back_to_backoff(headers: dict[str, str]) -> None:
    assert retry_delay(2, headers, rand=lambda: 0.0) == 2.0


def test_max_retry_after_is_configurable() -> None:
    policy = RetryPolicy(max_retry_after=120.0)
    assert retry_delay(0, {"retry-after": "90"}, policy, rand=lambda: 0.0) == 90.0


def test_http_date_wait_uses_the_given_now() -> None:
    headers = {"retry-after": format_datetime(NOW + timedelta(seconds=12), usegmt=True)}
    assert retry_delay(0, headers, now=NOW, rand=lambda: 0.0) == 12.0
    # The same date seen two minutes later is in the past: back to backoff.
    assert retry_delay(0, headers, now=NOW + timedelta(minutes=2), rand=lambda: 0.0) == 0.5


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"jitter": -0.1}, {"jitter": 1.5}], ids=str
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_defaults_match_the_official_sdk() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.initial_delay, policy.max_delay, policy.jitter) == (
        2,
        0.5,
        8.0,
        0.25,
    )

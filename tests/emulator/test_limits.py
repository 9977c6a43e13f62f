"""What a create call may hold, and the asynchronous validation of each request's params."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batches.api import Client, RateLimitError
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import request, requests


def _post(emulator: RunningEmulator, content: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{emulator.base_url}/v1/messages/batches",
        content=content,
        headers={
            "x-api-key": emulator.api_key,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            **headers,
        },
        timeout=60,
    )


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"]
    message: str = body["error"]["message"]
    return f"{body['error']['type']}: {message}"


def _body(items: list[Any]) -> str:
    return json.dumps({"requests": items})


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([request("ok"), request("bad id!")], "requests.1.custom_id: String should match"),
        ([request("x" * 65)], "requests.0.custom_id: String should match"),
        ([request("")], "requests.0.custom_id: String should match"),
        ([{"custom_id": 7, "params": {}}], "requests.0.custom_id: Input should be a valid string"),
        ([{"params": {}}], "requests.0.custom_id: Field required"),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
        ([{"custom_id": "a", "params": []}], "requests.0.params: Input should be an object"),
        (
            [{"custom_id": "a", "params": {}, "extra": 1}],
            "requests.0.extra: Extra inputs are not permitted",
        ),
        (["nope"], "requests.0: Input should be an object"),
        ([], "requests: List should have at least 1 item"),
        (
            [request("a"), request("b"), request("a")],
            "requests.2.custom_id: Duplicate custom_id 'a' (already used by requests.0)",
        ),
    ],
)
def test_structural_errors_name_the_item_and_field(
    emulator: RunningEmulator, items: list[Any], expected: str
) -> None:
    message = _error(_post(emulator, _body(items)), 400)
    assert message.startswith("invalid_request_error: ")
    assert expected in message
    assert emulator.admin.batches_created() == 0
    assert emulator.admin.create_calls() == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[]", "not valid JSON"),
        ('{"requests": [', "not valid JSON"),
        ('{"requests": [] , "x": 1}', "x: Extra inputs are not permitted"),
        ('{"requests": [] }', "requests: List should have at least 1 item"),
        ('{"other": 1}', "other: Extra inputs are not permitted"),
        ("{}", "requests: Field required"),
        ('{"requests": [{"custom_id": "a", "params": {"x": NaN}}]}', "NaN is not valid JSON"),
        (_body([request("a")]) + " trailing", "Extra data"),
        ('{"requests": [' + json.dumps(request("a")) + " " + json.dumps(request("b")), "','"),
    ],
)
def test_malformed_bodies(emulator: RunningEmulator, content: str, expected: str) -> None:
    assert expected in _error(_post(emulator, content), 400)


def test_invalid_utf8_is_rejected(emulator: RunningEmulator) -> None:
    raw = _body([request("a", text="caf\u00e9")]).encode().replace(b"caf", b"caf\xff")
    assert "UTF-8" in _error(_post(emulator, raw), 400)


def test_pretty_printed_and_non_ascii_bodies_are_kept_exactly(
    emulator: RunningEmulator, client: Client
) -> None:
    items = [request("a", text="h\u00e9llo \u2603 \U0001f600"), request("b", text="x\ny")]
    response = _post(emulator, json.dumps({"requests": items}, indent=2, ensure_ascii=False))
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    assert emulator.admin.requests(batch_id) == items
    emulator.wait_ended(batch_id)
    assert {r.result.type for r in client.results(batch_id)} == {"succeeded"}


def test_a_multi_megabyte_item(emulator: RunningEmulator, client: Client) -> None:
    big = request("big", text="word " * 700_000)  # 3.5 MB: bigger than the scan window
    response = _post(emulator, _body([request("small"), big, request("after")]))
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    assert emulator.admin.requests(batch_id)[1] == big
    emulator.wait_ended(batch_id)
    usage = {r.custom_id: r.result for r in client.results(batch_id)}
    assert usage["big"].type == "succeeded"
    assert usage["big"].message.usage.input_tokens > 800_000


def test_count_limit(emulator_factory: Callable[..., RunningEmulator]) -> None:
    small = emulator_factory(max_requests_per_batch=3)
    assert "at most 3" in _error(_post(small, _body(requests(4))), 400)
    assert _post(small, _body(requests(3))).status_code == 200
    small.configure(too_many_requests="request_too_large")
    assert _error(_post(small, _body(requests(4))), 413).startswith("request_too_large")


def test_size_limit_answers_413_even_to_a_client_that_sends_it_all(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    small = emulator_factory(max_body_bytes=10_000)
    # Far over the limit: the client must still get the 413, not a broken connection.
    message = _error(_post(small, _body(requests(20_000))), 413)
    assert message.startswith("request_too_large: ")
    assert small.admin.batches_created() == 0
    assert not any((small.data_dir / "incoming").iterdir())
    assert _post(small, _body(requests(5))).status_code == 200


def test_queue_cap_is_a_429(emulator_factory: Callable[..., RunningEmulator]) -> None:
    capped = emulator_factory(max_queued_requests=5, paused=True)
    assert _post(capped, _body(requests(3))).status_code == 200
    full = _post(capped, _body(requests(3, prefix="more")))
    assert _error(full, 429).startswith("rate_limit_error")
    assert full.headers["retry-after"] == "60"
    with (
        Client(api_key=capped.api_key, base_url=capped.base_url, max_retries=0) as client,
        pytest.raises(RateLimitError),
    ):
        client.create(requests(3))
    capped.configure(paused=False)
    capped.wait_until(lambda: capped.admin.stats()["queued_requests"] == 0)
    assert _post(capped, _body(requests(3, prefix="later"))).status_code == 200


def test_params_are_validated_asynchronously(emulator: RunningEmulator, client: Client) -> None:
    items = [
        request("ok"),
        request("no-max", max_tokens=None),
        request("zero-max", max_tokens=0),
        request("str-max", max_tokens="5"),
        request("huge-max", max_tokens=200_000),
        request("stream", stream=True),
        request("stream-false", stream=False),
        request("sdk-key", extra_body={"a": 1}),
        request("model", model="claude-imaginary-9"),
        request("no-messages", messages=None),
        request("empty-messages", messages=[]),
        request("bad-role", messages=[{"role": "robot", "content": "x"}]),
    ]
    for item in items:
        item["params"] = {k: v for k, v in item["params"].items() if v is not None}
    response = _post(emulator, _body(items))
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    emulator.wait_ended(batch_id)
    counts = client.retrieve(batch_id).request_counts
    assert (counts.succeeded, counts.errored) == (2, 10)
    results = {r.custom_id: r.result for r in client.results(batch_id)}
    expected = {
        "no-max": ("invalid_request_error", "max_tokens: Field required"),
        "zero-max": ("invalid_request_error", "max_tokens: Input should be greater than"),
        "str-max": ("invalid_request_error", "max_tokens: Input should be a valid integer"),
        "huge-max": ("invalid_request_error", "max_tokens: 200000 > 64000"),
        "stream": ("invalid_request_error", "stream:"),
        "sdk-key": ("invalid_request_error", "extra_body: Extra inputs are not permitted"),
        "model": ("not_found_error", "model: claude-imaginary-9"),
        "no-messages": ("invalid_request_error", "messages: Field required"),
        "empty-messages": ("invalid_request_error", "messages: List should have at least 1"),
        "bad-role": ("invalid_request_error", "messages.0.role"),
    }
    for custom_id, (error_type, message) in expected.items():
        result = results[custom_id]
        assert result.type == "errored", custom_id
        assert result.error.error.type == error_type, custom_id
        assert message in result.error.error.message, custom_id
        assert result.error.request_id
    assert results["ok"].type == results["stream-false"].type == "succeeded"


def test_the_300k_output_beta_raises_the_max_tokens_limit(
    emulator: RunningEmulator, client: Client
) -> None:
    response = _post(
        emulator,
        _body([request("big", max_tokens=300_000)]),
        **{"anthropic-beta": "output-300k-2026-03-24"},
    )
    batch_id = response.json()["id"]
    emulator.wait_ended(batch_id)
    assert [r.result.type for r in client.results(batch_id)] == ["succeeded"]


def test_a_user_profile_conflict_is_an_errored_line(
    emulator: RunningEmulator, client: Client
) -> None:
    items = [request("same", user_profile_id="p1"), request("other", user_profile_id="p2")]
    response = _post(emulator, _body(items), **{"anthropic-user-profile-id": "p1"})
    batch_id = response.json()["id"]
    emulator.wait_ended(batch_id)
    results = {r.custom_id: r.result for r in client.results(batch_id)}
    assert results["same"].type == "succeeded"
    assert results["other"].type == "errored"
    assert "user_profile_id" in results["other"].error.error.message

"""The emulator enforces the model-rules table, counts tokens per tokenizer family, and
serves the token-counting endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batches.api import Client, SucceededResult
from airflow_batches.api._count import count_tokens
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import request

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "forced-opus55": (
        {"model": "claude-opus-5-5", "tool_choice": {"type": "any"}, "tools": [{"name": "t"}]},
        'tool_choice.type: tool_choice.type "any" (forced tool use) is not supported on '
        "claude-opus-5-5",
    ),
    "forced-fable51": (
        {"model": "claude-fable-5-1", "tool_choice": {"type": "tool", "name": "t"}},
        "forced tool use",
    ),
    "nothink-fable5": (
        {"model": "claude-fable-5", "thinking": {"type": "disabled"}},
        'thinking.type: thinking.type "disabled" is not supported on claude-fable-5',
    ),
    "temp-sonnet5": (
        {"model": "claude-sonnet-5", "temperature": 0.3},
        "temperature: temperature set to 0.3 (a non-default value) is not supported on "
        "claude-sonnet-5",
    ),
    "budget-haiku55": (
        {"model": "claude-haiku-5-5", "thinking": {"type": "enabled", "budget_tokens": 2000}},
        "manual thinking budget",
    ),
    "prefill-sonnet55": (
        {
            "model": "claude-sonnet-5-5",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "{"}],
        },
        "messages.1.role: prefilling the assistant turn is not supported on claude-sonnet-5-5",
    ),
    "max-haiku45": (
        {"model": "claude-haiku-4-5", "max_tokens": 64_001},
        "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for "
        "claude-haiku-4-5",
    ),
}
ACCEPTED = {
    "auto-opus55": {"model": "claude-opus-5-5", "tool_choice": {"type": "auto"}},
    "temp1-sonnet5": {"model": "claude-sonnet-5", "temperature": 1},
    "forced-opus5": {"model": "claude-opus-5", "tool_choice": {"type": "any"}},
    "nothink-sonnet5": {"model": "claude-sonnet-5", "thinking": {"type": "disabled"}},
}


def _results(emulator: RunningEmulator, client: Client, items: list[dict[str, Any]]) -> Any:
    batch = client.create(items)
    emulator.wait_ended(batch.id)
    return {line.custom_id: line.result for line in client.results(batch.id)}


def test_refused_requests_end_errored_like_the_api(
    emulator: RunningEmulator, client: Client
) -> None:
    items = [request(cid, **fields) for cid, (fields, _) in REFUSED.items()]
    items += [request(cid, **fields) for cid, fields in ACCEPTED.items()]
    results = _results(emulator, client, items)
    for custom_id, (_, message) in REFUSED.items():
        result = results[custom_id]
        assert result.type == "errored", custom_id
        assert result.error.error.type == "invalid_request_error", custom_id
        assert message in result.error.error.message, (custom_id, result.error.error.message)
    for custom_id in ACCEPTED:
        assert isinstance(results[custom_id], SucceededResult), custom_id


def test_the_300k_beta_is_per_model(emulator: RunningEmulator, client: Client) -> None:
    items = [
        request("sonnet55", model="claude-sonnet-5-5", max_tokens=300_000),
        request("haiku45", model="claude-haiku-4-5", max_tokens=300_000),
    ]
    with Client(
        api_key=emulator.api_key, base_url=emulator.base_url, betas=["output-300k-2026-03-24"]
    ) as beta_client:
        results = _results(emulator, beta_client, items)
    assert results["sonnet55"].type == "succeeded"
    # Haiku 4.5 has no entry for the beta: not refused by the table, so the beta's limit holds.
    assert results["haiku45"].type == "succeeded"
    without = _results(
        emulator, client, [request("plain", model="claude-sonnet-5-5", max_tokens=300_000)]
    )
    assert "300000 > 128000" in without["plain"].error.error.message


def test_rules_can_be_switched_off_in_the_config(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    emulator = emulator_factory(model_rules=False)
    with Client(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        fields, _ = REFUSED["forced-opus55"]
        results = _results(emulator, client, [request("x", **fields)])
    assert results["x"].type == "succeeded"


def test_usage_counts_the_newer_tokenizer_30_percent_higher(
    emulator: RunningEmulator, client: Client
) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 200
    results = _results(
        emulator,
        client,
        [
            request("old", model="claude-haiku-4-5", text=text),
            request("new", model="claude-haiku-5-5", text=text),
        ],
    )
    old = results["old"].message.usage.input_tokens
    new = results["new"].message.usage.input_tokens
    assert new / old == pytest.approx(1.3, abs=0.01)


def test_count_tokens_endpoint(emulator: RunningEmulator, client: Client) -> None:
    text = "x" * 995  # "user:" + 995 bytes = 1000 bytes
    counted = count_tokens(
        client, {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": text}]}
    )
    assert counted == 250
    newer = count_tokens(
        client, {"model": "claude-haiku-5-5", "messages": [{"role": "user", "content": text}]}
    )
    assert newer == 325  # ceil(1000 / 3.077)
    results = _results(emulator, client, [request("same", model="claude-haiku-4-5", text=text)])
    assert results["same"].message.usage.input_tokens == counted
    assert emulator.admin.stats()["count_tokens_calls"] == 2
    assert emulator.admin.create_calls() == 1


def test_count_tokens_rejects_bad_bodies_and_keys(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/v1/messages/count_tokens"
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    missing = httpx.post(
        url, json={"messages": [{"role": "user", "content": "a"}]}, headers=headers
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "model: Field required"
    unauthorised = httpx.post(url, json={"model": "m", "messages": []}, headers={})
    assert unauthorised.status_code == 401

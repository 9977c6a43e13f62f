"""The default responder (deterministic, cache accounting, max_tokens) and custom ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_batches.api import Client, SucceededResult
from airflow_batches.emulator import RequestError, ResponderContext
from airflow_batches.emulator.responders import CacheLedger, default_responder
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import MODEL, request, requests

LONG = "All happy families are alike; each unhappy family is unhappy in its own way. " * 80


def _run(emulator: RunningEmulator, client: Client, items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = client.create(items)
    emulator.wait_ended(batch.id)
    out = {}
    for line in client.results(batch.id):
        assert isinstance(line.result, SucceededResult), line
        out[line.custom_id] = line.result.message
    return out


def _context(params: dict[str, Any], **overrides: Any) -> ResponderContext:
    values: dict[str, Any] = {
        "batch_id": "b",
        "custom_id": "c",
        "params": params,
        "workspace": "default",
        "api_version": "2023-06-01",
        "betas": (),
        "now": 1_000_000.0,
        "message_id": "msg_x",
        "cache": CacheLedger(),
        "cache_min_tokens": 1024,
    }
    values.update(overrides)
    return ResponderContext(**values)


def test_same_input_same_output(emulator: RunningEmulator, client: Client) -> None:
    first = _run(emulator, client, requests(10))
    second = _run(emulator, client, requests(10))
    for custom_id, message in first.items():
        other = second[custom_id]
        assert message.content == other.content
        assert message.usage == other.usage
        assert message.stop_reason == other.stop_reason
        assert message.id != other.id
    texts = {m.content[0].text for m in first.values()}
    assert len(texts) == 10


def test_messages_are_well_formed(emulator: RunningEmulator, client: Client) -> None:
    messages = _run(emulator, client, [request("a", text="x" * 400)])
    message = messages["a"]
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens == pytest.approx(102, abs=3)
    assert message.usage.output_tokens >= 1
    assert message.usage.service_tier == "batch"


def test_max_tokens_cuts_the_answer(emulator: RunningEmulator, client: Client) -> None:
    full = _run(emulator, client, [request("a")])["a"]
    assert full.stop_reason == "end_turn"
    limit = max(1, full.usage.output_tokens - 2)
    cut = _run(emulator, client, [request("a", max_tokens=limit)])["a"]
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == limit
    assert full.content[0].text.startswith(cut.content[0].text)


def _cached(custom_id: str, question: str, ttl: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {"type": "ephemeral"}
    if ttl:
        marker["ttl"] = ttl
    return request(
        custom_id,
        question,
        system=[
            {"type": "text", "text": "You analyse novels."},
            {"type": "text", "text": LONG, "cache_control": marker},
        ],
    )


def test_cache_write_then_reads_within_five_minutes(
    emulator: RunningEmulator, client: Client
) -> None:
    first = _run(emulator, client, [_cached("q1", "Themes?")])["q1"].usage
    assert first.cache_creation_input_tokens > 1024
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens

    emulator.advance_clock(240)
    second = _run(emulator, client, [_cached("q2", "Summary?")])["q2"].usage
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens < 20

    # Each read refreshed the entry; six minutes of silence let it expire.
    emulator.advance_clock(360)
    third = _run(emulator, client, [_cached("q3", "Characters?")])["q3"].usage
    assert third.cache_read_input_tokens == 0
    assert third.cache_creation_input_tokens == first.cache_creation_input_tokens


def test_one_hour_cache_and_workspaces(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(workspaces={"default": ["k1"], "other": ["k2"]})
    with (
        Client(api_key="k1", base_url=em.base_url) as one,
        Client(api_key="k2", base_url=em.base_url) as two,
    ):
        write = _run(em, one, [_cached("a", "x", ttl="1h")])["a"].usage
        assert write.cache_creation.ephemeral_1h_input_tokens > 0
        assert write.cache_creation.ephemeral_5m_input_tokens == 0
        em.advance_clock(1800)
        assert _run(em, one, [_cached("b", "y", ttl="1h")])["b"].usage.cache_read_input_tokens
        # Another workspace never reads this workspace's cache.
        other = _run(em, two, [_cached("c", "z", ttl="1h")])["c"].usage
        assert other.cache_read_input_tokens == 0
        assert other.cache_creation_input_tokens > 0


def test_short_prompts_are_not_cached() -> None:
    params = request("a", system=[{"type": "text", "text": "hi", "cache_control": {}}])["params"]
    ctx = _context(params)
    usage = default_responder(ctx)["usage"]
    assert usage["cache_creation_input_tokens"] == 0
    again = default_responder(_context(params, cache=ctx.cache))["usage"]
    assert again["cache_read_input_tokens"] == 0


def test_automatic_caching_with_top_level_cache_control() -> None:
    params = request("a", text=LONG, cache_control={"type": "ephemeral"})["params"]
    ctx = _context(params)
    first = default_responder(ctx)["usage"]
    assert first["cache_creation_input_tokens"] > 1024
    second = default_responder(_context(params, cache=ctx.cache, now=1_000_100.0))["usage"]
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]


def test_tool_choice_gives_a_tool_use_block() -> None:
    tool = {
        "name": "grade",
        "description": "Grade an answer",
        "input_schema": {
            "type": "object",
            "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
            "required": ["score", "reason"],
        },
    }
    params = request("a", tools=[tool], tool_choice={"type": "tool", "name": "grade"})["params"]
    message = default_responder(_context(params))
    assert message["stop_reason"] == "tool_use"
    block = message["content"][0]
    assert block["type"] == "tool_use"
    assert block["name"] == "grade"
    assert set(block["input"]) == {"score", "reason"}
    assert message == default_responder(_context(params))


def test_thinking_and_stop_sequences() -> None:
    params = request("a", thinking={"type": "enabled", "budget_tokens": 1024})["params"]
    message = default_responder(_context(params))
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    words = message["content"][1]["text"].split()
    stop = words[len(words) // 2]
    stopped = default_responder(_context({**params, "stop_sequences": [stop]}))
    assert stopped["stop_reason"] == "stop_sequence"
    assert stopped["stop_sequence"] == stop
    kept = stopped["content"][1]["text"].split()
    assert kept == words[: words.index(stop)]


def shouting(ctx: ResponderContext) -> dict[str, Any]:
    """A custom responder, loaded by import path in the test below."""
    text = ctx.params["messages"][-1]["content"]
    if text == "fail":
        raise RequestError("overloaded_error", "too loud")
    if text == "crash":
        raise RuntimeError("bug in the responder")
    return {
        "id": ctx.message_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.params["model"],
        "content": [{"type": "text", "text": text.upper()}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def test_a_custom_responder_by_import_path(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(responder="tests.emulator.test_responders:shouting")
    with Client(api_key=em.api_key, base_url=em.base_url) as client:
        batch = client.create([request("a", "hello"), request("b", "fail"), request("c", "crash")])
        em.wait_ended(batch.id)
        results = {r.custom_id: r.result for r in client.results(batch.id)}
    assert results["a"].message.content[0].text == "HELLO"  # type: ignore[union-attr]
    assert results["b"].error.error.type == "overloaded_error"  # type: ignore[union-attr]
    assert results["c"].error.error.type == "api_error"  # type: ignore[union-attr]
    # Chosen at start only: the admin view never imports a module it is sent.
    with pytest.raises(ValueError, match="responder: cannot be set through the admin view"):
        em.configure(responder="airflow_batches.emulator.responders:default_responder")
    assert em.config.responder == "tests.emulator.test_responders:shouting"

"""Responders: what a succeeded request answers.

A responder is any callable ``(ResponderContext) -> dict`` returning a Message object (the
``message`` of a succeeded line), chosen by import path (``config.responder =
"module:callable"``). It may raise ``RequestError`` to end the request ``errored``. It runs in
a worker thread, so it may block, and must be thread-safe.

The default responder is deterministic: the same params give the same content and token
counts (only the message id differs between requests).
"""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_batches.api._prompt import CacheLedger, CacheUsage, prompt_breakpoints
from airflow_batches.api._rules import load_rules_table
from airflow_batches.emulator.validation import RequestError

__all__ = [
    "CacheLedger",
    "RequestError",
    "Responder",
    "ResponderContext",
    "default_responder",
    "load_responder",
]

_encoder = msgspec.json.Encoder(order="sorted")

_VOCABULARY = (
    "batch request model answer token result stream cache prompt queue worker emulated "
    "reply line field value output input system message tool usage count latency clock "
    "retry window offset index chunk bytes shard job manifest cost price state ended "
    "canceled expired errored succeeded schema record ledger signal branch metric sample "
    "review summary detail example context"
)
_WORDS = tuple(_VOCABULARY.split())

_CUTTERS = frozenset({"max_tokens", "stop_sequences"})


@dataclass(frozen=True, slots=True)
class ResponderContext:
    """Everything a responder may look at for one request."""

    batch_id: str
    custom_id: str
    params: dict[str, Any]
    workspace: str
    api_version: str
    betas: tuple[str, ...]
    now: float
    """Emulated time (epoch seconds) at which the request is processed."""
    message_id: str
    cache: CacheLedger
    cache_min_tokens: int
    options: Mapping[str, Any] = field(default_factory=dict)
    """The config's ``responder_options``: settings of the responder's own."""


Responder = Callable[[ResponderContext], dict[str, Any]]


def load_responder(path: str) -> Responder:
    """Import ``module:callable``."""
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"responder {path!r} is not callable")
    responder: Responder = target
    return responder


def _tokens(data: bytes) -> int:
    # About four bytes a token, as a rule of thumb for English text.
    return max(1, (len(data) + 3) // 4)


def prompt_usage(ctx: ResponderContext) -> CacheUsage:
    """Input tokens split into plain input, cache writes and cache reads.

    Tokens are counted with the model's tokenizer family (the model-rules table): the same
    text is about 30% more tokens on Claude 4.7 and later than on earlier models.
    """
    model = str(ctx.params.get("model"))
    per_token = load_rules_table().tokenizer(model).bytes_per_token
    breakpoints, total = prompt_breakpoints(ctx.params, model, per_token)
    return ctx.cache.account(ctx.workspace, breakpoints, total, ctx.now, ctx.cache_min_tokens)


# -- the default responder -------------------------------------------------------------------


def _fake_from_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return None
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {
            name: _fake_from_schema(props.get(name), rng, depth + 1)
            for name in required
            if name in props
        }
    if kind == "array":
        return [_fake_from_schema(schema.get("items"), rng, depth + 1)]
    if kind == "integer":
        return rng.randint(0, 100)
    if kind == "number":
        return round(rng.random() * 100, 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(_WORDS)
    return None


def _tool_choice(params: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    tools = [t for t in params.get("tools") or () if isinstance(t, dict) and t.get("name")]
    choice = params.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t.get("name") == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[rng.randrange(len(tools))]
    return None


def _words(digest: bytes, count: int) -> list[str]:
    # A hash stream is several times faster than random.choice for 100,000 requests.
    stream = hashlib.shake_128(digest).digest(count)
    return [_WORDS[b % len(_WORDS)] for b in stream]


def default_responder(ctx: ResponderContext) -> dict[str, Any]:
    """A deterministic Message derived from the params."""
    params = ctx.params
    # max_tokens and stop_sequences only cut the answer, they never change it.
    seed_bytes = _encoder.encode({k: v for k, v in params.items() if k not in _CUTTERS})
    digest = hashlib.blake2b(seed_bytes, digest_size=16).digest()
    # Only tool answers need a real generator; seeding one costs more than the rest.
    rng = random.Random(int.from_bytes(digest, "big")) if params.get("tools") else None
    max_tokens = int(params["max_tokens"])
    usage = prompt_usage(ctx)

    content: list[dict[str, Any]] = []
    budget = max_tokens
    stop_reason = "end_turn"
    stop_sequence: str | None = None
    thinking, thinking_tokens = thinking_block(params, digest, budget)
    if thinking is not None:
        budget -= thinking_tokens
        content.append(thinking)

    tool = _tool_choice(params, rng) if rng is not None else None
    if tool is not None and rng is not None and budget >= 1:
        tool_input = _fake_from_schema(tool.get("input_schema"), rng) or {}
        encoded_input = _encoder.encode(tool_input)
        budget -= _tokens(encoded_input)
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_" + hashlib.blake2b(digest + b"tool", digest_size=12).hexdigest(),
                "name": tool["name"],
                "input": tool_input,
            }
        )
        stop_reason = "tool_use" if budget >= 0 else "max_tokens"
    else:
        planned = _words(digest, 5 + digest[0] % 60)
        stops = [s for s in params.get("stop_sequences") or () if isinstance(s, str)]
        for i, word in enumerate(planned):
            if word in stops:
                planned, stop_reason, stop_sequence = planned[:i], "stop_sequence", word
                break
        if len(planned) > budget:
            planned, stop_reason, stop_sequence = planned[: max(budget, 0)], "max_tokens", None
        budget -= len(planned)
        content.append({"type": "text", "text": " ".join(planned)})

    output_tokens = max(1, min(max_tokens - budget, max_tokens))
    return {
        "id": ctx.message_id,
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_of(usage, output_tokens, thinking_tokens if thinking is not None else None),
    }


def thinking_block(
    params: Mapping[str, Any], digest: bytes, budget: int
) -> tuple[dict[str, Any] | None, int]:
    """The answer's thinking block and its tokens (at most ``budget``, at least 1), or
    ``(None, 0)`` when the params do not turn thinking on (``enabled`` or ``adaptive``).

    ``display: "omitted"`` empties the text and keeps the signature and the token count, as
    the API does; ``"updates"`` (a beta) is answered like ``"summarized"``. ``digest`` (at
    least 2 bytes) fixes the words.
    """
    thinking = params.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "adaptive"):
        return None, 0
    thought = _words(digest[::-1], max(1, min(budget, 8 + digest[1] % 16)))
    text = "" if thinking.get("display") == "omitted" else " ".join(thought)
    block = {"type": "thinking", "thinking": text, "signature": "emulated-" + digest.hex()[:16]}
    return block, len(thought)


def usage_of(
    usage: CacheUsage, output_tokens: int, thinking_tokens: int | None = None
) -> dict[str, Any]:
    """A Message's ``usage`` from the prompt's accounting and the answer's length.

    ``thinking_tokens`` (the part of ``output_tokens`` spent thinking) is given for an answer
    with a thinking block: it becomes ``output_tokens_details``, which the API has sent since
    2026-05-27 on answers with thinking, without a beta and under both API versions.
    """
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.write_5m + usage.write_1h,
        "cache_read_input_tokens": usage.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.write_5m,
            "ephemeral_1h_input_tokens": usage.write_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": "batch",
    }
    if thinking_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": min(thinking_tokens, output_tokens)}
    return out

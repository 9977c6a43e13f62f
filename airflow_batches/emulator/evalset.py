"""A known task set the emulator answers: arithmetic, lookups, short JSON extractions.

:func:`eval_requests` builds ``n`` requests in three categories, each with its ``metadata``
(``category``, ``expected``, and the ``schema`` of an extraction), deterministically from a
seed. :func:`eval_responder` (select it with ``responder =
"airflow_batches.emulator.evalset:eval_responder"``) reads the question back from the prompt
and answers it correctly, except for a share of requests per model, which get a plausible
wrong answer: ``responder_options = {"error_rates": {"claude-haiku-4-5": 0.2, "*": 0.05}}``
(the model's own rate, else ``"*"``, else 0). Whether a request is answered wrongly is a hash
of ``responder_options.seed``, the model and the question: the same question to the same model
always gets the same answer, so scores are stable from run to run. A prompt it does not
recognise gets ``"I don't know."``. With thinking on (``enabled`` or ``adaptive``) the answer
starts with a thinking block, as the default responder's does.

The emulator imports nothing outside the standard library and ``airflow_batches.api``; this
module keeps to that.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from typing import Any

from airflow_batches.emulator.responders import (
    ResponderContext,
    prompt_usage,
    thinking_block,
    usage_of,
)

__all__ = ["CAPITALS", "PERSON_SCHEMA", "eval_requests", "eval_responder", "solve"]

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Canada": "Ottawa",
    "Brazil": "Brasília",
    "Australia": "Canberra",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    "Peru": "Lima",
    "India": "New Delhi",
    "Germany": "Berlin",
    "Vietnam": "Hanoi",
    "Chile": "Santiago",
    "Portugal": "Lisbon",
    "Morocco": "Rabat",
    "Finland": "Helsinki",
    "Thailand": "Bangkok",
    "Ghana": "Accra",
    "Ireland": "Dublin",
    "Mexico": "Mexico City",
}
NAMES = ("Alice", "Bruno", "Chiara", "Dmitri", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jun")
CITIES = ("Lyon", "Osaka", "Mombasa", "Quebec", "Recife", "Perth", "Luxor", "Bergen")
PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
CATEGORIES = ("arithmetic", "lookup", "extraction")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

_ARITHMETIC = re.compile(r"What is (-?\d+) ([+*-]) (-?\d+)\?")
_CAPITAL = re.compile(r"What is the capital of ([A-Za-z ]+)\?")
_PERSON = re.compile(r"sentence as JSON[^:]*: (\w+) is (\d+) years old")


def _question(category: str, rng: random.Random) -> tuple[str, Any]:
    if category == "arithmetic":
        a, b, op = rng.randint(2, 999), rng.randint(2, 99), rng.choice(sorted(_OPS))
        return f"What is {a} {op} {b}? Answer with the number only.", _OPS[op](a, b)
    if category == "lookup":
        country = rng.choice(sorted(CAPITALS))
        return (
            f"What is the capital of {country}? Answer with the city name only.",
            CAPITALS[country],
        )
    name, age, city = rng.choice(NAMES), rng.randint(18, 90), rng.choice(CITIES)
    return (
        "Extract the person's name and age from this sentence as JSON with the keys name and "
        f"age, nothing else: {name} is {age} years old and lives in {city}.",
        {"name": name, "age": age},
    )


def eval_requests(n: int, *, seed: int = 0, prefix: str = "t") -> list[dict[str, Any]]:
    """``n`` requests (``{custom_id, params: {messages}, metadata}``), categories in turn."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        question, expected = _question(category, rng)
        metadata: dict[str, Any] = {"category": category, "expected": expected}
        if category == "extraction":
            metadata["schema"] = PERSON_SCHEMA
        out.append(
            {
                "custom_id": f"{prefix}{i:06d}",
                "params": {"messages": [{"role": "user", "content": question}]},
                "metadata": metadata,
            }
        )
    return out


def solve(prompt: str) -> tuple[str, Any] | None:
    """``(category, right answer)`` of a question of this set, or None."""
    if m := _ARITHMETIC.search(prompt):
        return "arithmetic", _OPS[m.group(2)](int(m.group(1)), int(m.group(3)))
    if (m := _CAPITAL.search(prompt)) and m.group(1) in CAPITALS:
        return "lookup", CAPITALS[m.group(1)]
    if m := _PERSON.search(prompt):
        return "extraction", {"name": m.group(1), "age": int(m.group(2))}
    return None


def _wrong(category: str, right: Any, draw: int) -> Any:
    if category == "arithmetic":
        return right + 1 + draw % 9
    if category == "lookup":
        others = sorted(set(CAPITALS.values()) - {right})
        return others[draw % len(others)]
    if draw % 3 == 0:
        return f"name: {right['name']}, age: {right['age']}"  # not JSON
    return {**right, "age": right["age"] + 1 + draw % 5}


def _prompt_text(params: Mapping[str, Any]) -> str:
    messages = params.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, Mapping) else ""
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
    return str(content or "")


def _rate(options: Mapping[str, Any], model: str) -> float:
    rates = options.get("error_rates") or {}
    return float(rates.get(model, rates.get("*", 0.0)))


def eval_responder(ctx: ResponderContext) -> dict[str, Any]:
    """A Message answering a question of this set (see the module docstring)."""
    params = ctx.params
    model = str(params["model"])
    prompt = _prompt_text(params)
    solved = solve(prompt)
    seed = str(ctx.options.get("seed", 0))
    digest = hashlib.blake2b(f"{seed}\n{model}\n{prompt}".encode(), digest_size=8).digest()
    draw = int.from_bytes(digest, "big")
    if solved is None:
        answer: Any = "I don't know."
    else:
        category, answer = solved
        if draw / 2**64 < _rate(ctx.options, model):
            answer = _wrong(category, answer, draw >> 8)
    text = answer if isinstance(answer, str) else json.dumps(answer)
    usage = prompt_usage(ctx)
    max_tokens = int(params["max_tokens"])
    text_tokens = max(1, (len(text) + 3) // 4)
    thinking, thinking_tokens = thinking_block(params, digest, max(1, max_tokens - text_tokens))
    content = [{"type": "text", "text": text}]
    if thinking is not None:
        content.insert(0, thinking)
    output_tokens = min(text_tokens + thinking_tokens, max_tokens)
    return {
        "id": ctx.message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage_of(usage, output_tokens, thinking_tokens if thinking is not None else None),
    }

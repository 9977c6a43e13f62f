"""The eval responder: right answers to the known task set, wrong ones at each model's rate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow_batches.api import Client, SucceededResult
from airflow_batches.emulator.evalset import eval_requests, eval_responder, solve
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.test_responders import _context

MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5")


def right(request: dict[str, Any], text: str) -> bool:
    expected = request["metadata"]["expected"]
    if request["metadata"]["category"] == "extraction":
        try:
            return bool(json.loads(text) == expected)
        except ValueError:
            return False
    return text == str(expected)


def test_it_answers_right_but_for_each_models_share(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    # The responder is chosen at start (the admin view never imports what it is sent).
    emulator = emulator_factory(
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": {"claude-haiku-4-5": 0.3, "*": 0.0}, "seed": 4},
    )
    client = Client(api_key=emulator.api_key, base_url=emulator.base_url, sleep=lambda _: None)
    base = eval_requests(300, seed=9)
    items = [
        {
            "custom_id": f"{m[7:12]}{r['custom_id']}",
            "params": {**r["params"], "model": m, "max_tokens": 64},
        }
        for m in MODELS
        for r in base
    ]
    with client:
        batch = client.create(items)
        emulator.wait_ended(batch.id)
        lines = list(client.results(batch.id))
    wrong = dict.fromkeys(MODELS, 0)
    by_id = {i["custom_id"]: r for i, r in zip(items, base * 2, strict=True)}
    for line in lines:
        assert isinstance(line.result, SucceededResult)
        message = line.result.message
        text = message.content[0].text
        wrong[message.model] += not right(by_id[line.custom_id], text)
        assert message.usage.output_tokens >= 1 and message.usage.input_tokens > 0
    assert wrong["claude-sonnet-4-5"] == 0
    assert 60 <= wrong["claude-haiku-4-5"] <= 120  # 30 % of 300, give or take


def test_the_same_question_to_the_same_model_gets_the_same_answer() -> None:
    request = eval_requests(1)[0]
    params = {**request["params"], "model": "m", "max_tokens": 32}
    options = {"error_rates": {"m": 0.5}, "seed": 1}
    answers = {
        eval_responder(_context(params, options=options, custom_id=f"c{i}"))["content"][0]["text"]
        for i in range(5)
    }
    assert len(answers) == 1


def test_an_unknown_question_is_not_answered() -> None:
    params = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi?"}]}
    assert eval_responder(_context(params))["content"][0]["text"] == "I don't know."
    assert solve("What is the capital of Atlantis?") is None

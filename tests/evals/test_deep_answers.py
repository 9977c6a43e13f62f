"""Answers nesting deeper than Python's parsers go never fail an evaluation: a line that cannot
be read whole is counted and left unscored with the reason; a ``json_schema`` answer of
thousands of brackets scores 0, saying why."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.evals import EvalResult, Evaluation, extract_json, json_schema
from airflow_batches.evals._evaluate import TOO_DEEP
from tests.evals import lines as L
from tests.jobs.results.test_deep_lines import tool_line

PRICES = load_price_table()
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
BRACKETS = "[" * 50_000 + "]" * 50_000


def answer(text: str) -> EvalResult:
    return EvalResult(L.succeeded("q", text)["result"], custom_id="q")


@pytest.mark.parametrize("text", [BRACKETS, "[" * 50_000, f"Here: ```json\n{BRACKETS}\n```"])
def test_json_schema_scores_an_answer_of_thousands_of_brackets_0_saying_why(text: str) -> None:
    got = json_schema(SCHEMA)(answer(text), None)
    assert got == {
        "score": False,
        "error": "the answer's JSON nests deeper than Python's parser can go",
    }
    with pytest.raises(ValueError, match="nests deeper"):
        extract_json(text)


def test_json_schema_of_a_value_too_deep_to_validate_scores_0() -> None:
    deep: Any = 1
    for _ in range(5_000):
        deep = [deep]
    scorer = json_schema({"type": "array", "items": {"$ref": "#"}}, from_tool=True)
    result = EvalResult({"message": {"content": [{"type": "tool_use", "input": deep}]}})
    assert scorer(result, None) == {
        "score": False,
        "error": "the answer nests too deep to be checked",
    }


def test_a_line_too_deep_to_read_is_counted_and_left_unscored_with_the_reason() -> None:
    out = io.BytesIO()
    evaluation = Evaluation(json_schema(SCHEMA, from_tool=True), PRICES, scores=out)
    evaluation.add(json.dumps(L.succeeded("flat", '{"a": 1}')).encode())
    evaluation.add(tool_line("deep"))
    evaluation.add(json.dumps(L.succeeded("brackets", BRACKETS)).encode())
    m = evaluation.summary()["models"]["claude-haiku-4-5"]
    assert m["counts"]["succeeded"] == 3
    assert (m["scored"], m["unscored"]) == (2, 1)
    assert m["cost_usd"] > 0  # the deep line's usage is counted too
    written = {x["custom_id"]: x for x in map(json.loads, out.getvalue().splitlines())}
    assert written["deep"]["details"] == {"unscorable": TOO_DEEP}
    assert "score" not in written["deep"]
    assert written["brackets"]["score"] == 0.0


def test_a_scorer_that_runs_out_of_recursion_leaves_that_answer_unscored() -> None:
    def recursive(result: EvalResult, metadata: Any) -> bool:
        def walk(node: Any) -> int:  # three frames a level: 400 levels are past the limit
            return 1 + deeper(node) if isinstance(node, list) else 0

        def deeper(node: list[Any]) -> int:
            return max((walk(x) for x in node), default=0)

        return walk(result.tool_inputs) > 1

    line = L.succeeded("q", "x")
    line["result"]["message"]["content"] = [{"type": "tool_use", "input": "@"}]
    raw = json.dumps(line).encode().replace(b'"@"', b"[" * 400 + b"]" * 400)
    evaluation = Evaluation(recursive, PRICES, scores=(out := io.BytesIO()))
    evaluation.add(raw)
    evaluation.add(json.dumps(L.succeeded("r", "x")).encode())
    [first, second] = map(json.loads, out.getvalue().splitlines())
    assert "ran out of recursion" in first["details"]["unscorable"]
    assert "score" not in first
    assert second["score"] == 0.0  # no tool input: scored as usual
    m = evaluation.summary()["models"]["claude-haiku-4-5"]
    assert (m["scored"], m["unscored"]) == (1, 1)

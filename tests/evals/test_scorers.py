"""The built-in scorers, user scorers, and what a score may be."""

from __future__ import annotations

import copy
import pickle
from types import MappingProxyType
from typing import Any

import pytest

from airflow_batches.evals import (
    EvalResult,
    Score,
    ScorerError,
    by_category,
    contains,
    exact_match,
    extract_json,
    json_schema,
    last_number,
    numeric,
    regex,
    resolve_scorer,
    to_score,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def answer(text: str = "", *blocks: dict[str, Any]) -> EvalResult:
    content = [*blocks] or [{"type": "text", "text": text}]
    return EvalResult({"type": "succeeded", "message": {"content": content}}, custom_id="q1")


def test_the_result_is_the_apis_object_with_its_text_and_tool_inputs() -> None:
    result = answer(
        "",
        {"type": "thinking", "thinking": "hmm"},
        {"type": "text", "text": "4"},
        {"type": "tool_use", "name": "t", "input": {"a": 1}},
        {"type": "text", "text": "2"},
    )
    assert result["type"] == "succeeded" and result["message"]["content"][0]["type"] == "thinking"
    assert result.text == "42"
    assert result.tool_inputs == [{"a": 1}]
    assert result.custom_id == "q1"


@pytest.mark.parametrize(
    ("value", "score"),
    [
        (True, Score(1.0, True)),
        (False, Score(0.0, False)),
        (1, Score(1.0, True)),
        (0.5, Score(0.5, False)),
        ({"score": 0.5, "passed": True, "why": "close"}, Score(0.5, True, {"why": "close"})),
        ({"score": False}, Score(0.0, False)),
        ({"score": True, "passed": False}, Score(1.0, False)),
        ({"score": True, "passed": None, "answer": 4}, Score(1.0, True, {"answer": 4})),
        ({"score": None, "why": "skipped"}, None),
        ({"score": {"score": 0.25}}, Score(0.25, False)),
        (None, None),
    ],
)
def test_what_a_scorer_may_return(value: Any, score: Score | None) -> None:
    assert to_score(value) == score


def test_an_answer_travels_and_takes_a_scorers_own_attributes() -> None:
    result = EvalResult({"message": {"content": [{"type": "text", "text": "hi"}]}}, custom_id="c")
    result.note = "a scorer's own"  # type: ignore[attr-defined]
    for copied in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        assert isinstance(copied, EvalResult) and copied == result
        assert (copied.custom_id, copied.model, copied.text) == ("c", None, "hi")
        assert copied.note == "a scorer's own"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ([{"type": "text", "text": "one"}], "one"),
        ([{"type": "text", "text": 7}], "7"),
        ([{"type": "text"}], ""),
        ([{"type": "thinking", "thinking": "x"}], ""),
        ([], ""),
        ("not a list", ""),
        (None, ""),
        (["a string block", {"type": "text", "text": "b"}], "b"),
        (["a string block"], ""),
        ([{"type": "tool_use", "input": {"text": "no"}}], ""),
        ([MappingProxyType({"type": "text", "text": "z"})], "z"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "ab"),
    ],
)
def test_the_text_of_odd_answers(content: Any, text: str) -> None:
    assert EvalResult({"message": {"content": content}}).text == text
    assert EvalResult({"message": "not an object"}).text == ""
    assert EvalResult({}).text == ""


def test_a_lower_pass_threshold_passes_partial_scores() -> None:
    assert to_score(0.7, pass_threshold=0.6) == Score(0.7, True)


@pytest.mark.parametrize(
    "value", ["yes", [1], {"passed": True}, float("nan"), {"score": 1, "passed": 1}]
)
def test_anything_else_is_a_clear_error(value: Any) -> None:
    with pytest.raises(ScorerError):
        to_score(value)


def test_exact_match_normalises_case_spaces_and_trailing_punctuation() -> None:
    scorer = exact_match()
    assert scorer(answer("  Paris. "), {"expected": "paris"}) is True
    assert scorer(answer("New   Delhi"), {"expected": ["Delhi", "New Delhi"]}) is True
    assert scorer(answer("Lyon"), {"expected": "Paris"}) is False
    assert scorer(answer("Paris"), {"other": 1}) is None  # nothing to compare with: unscored
    assert exact_match(case_sensitive=True)(answer("paris"), {"expected": "Paris"}) is False
    assert exact_match("gold")(answer("Au"), {"gold": "au"}) is True


def test_contains_any_or_all() -> None:
    assert contains()(answer("The capital is Paris."), {"expected": "paris"}) is True
    assert contains()(answer("Lyon"), {"expected": ["paris", "lyon"]}) is True
    assert contains(all_of=True)(answer("Lyon"), {"expected": ["paris", "lyon"]}) is False


def test_regex_from_the_scorer_or_from_the_metadata() -> None:
    assert regex(r"^\d{4}-\d{2}-\d{2}$")(answer("2026-01-31"), None) is True
    assert regex(r"^\d+$")(answer("12a"), None) is False
    assert regex()(answer("order #123"), {"pattern": r"#\d+"}) is True


def test_json_schema_reads_fenced_or_embedded_json_and_says_what_is_wrong() -> None:
    scorer = json_schema(PERSON)
    assert scorer(answer('```json\n{"name": "Ada", "age": 36}\n```'), {}) == {"score": True}
    assert scorer(answer('Here: {"name": "Ada", "age": 36}.'), {}) == {"score": True}
    bad = scorer(answer('{"name": "Ada", "age": "36"}'), {})
    assert bad["score"] is False and bad["error"].startswith("age:")
    assert scorer(answer("no json"), {})["score"] is False
    expected = {"expected": {"name": "Ada", "age": 36}}
    assert scorer(answer('{"name": "Ada", "age": 37}'), expected)["score"] is False
    from_metadata = json_schema(schema_key="schema")
    assert from_metadata(answer('{"name": "A", "age": 1}'), {"schema": PERSON}) == {"score": True}
    tool = json_schema(PERSON, from_tool=True)
    result = answer("", {"type": "tool_use", "name": "p", "input": {"name": "A", "age": 1}})
    assert tool(result, {}) == {"score": True}
    with pytest.raises(ScorerError, match="not valid"):
        json_schema({"type": "no-such-type"})


def test_numeric_reads_the_last_number_within_a_tolerance() -> None:
    assert last_number("It is 1,234.5 or so") == 1234.5
    assert numeric()(answer("The answer is 42."), {"expected": 42})["score"] is True
    assert numeric()(answer("41"), {"expected": "42"}) == {"score": False, "answer": 41.0}
    assert numeric(abs_tol=0.01)(answer("3.141"), {"expected": 3.14159})["score"] is True
    assert numeric(rel_tol=0.1)(answer("95"), {"expected": 100})["score"] is True
    assert numeric()(answer("none"), {"expected": 1})["score"] is False
    with pytest.raises(ScorerError, match="not a number"):
        numeric()(answer("1"), {"expected": "one"})


@pytest.mark.parametrize(
    "text", ["7", "0042", "83769", "\u0663\u0664", "\uff11\uff12", "\u00b2", "1" * 400, "", "12a"]
)
def test_last_number_of_digits_alone_is_what_the_pattern_reads(text: str) -> None:
    from airflow_batches.evals._builtin import _NUMBER

    found = _NUMBER.findall(text)
    assert last_number(text) == (float(found[-1].replace(",", "")) if found else None)


def test_by_category_picks_the_scorer_of_the_requests_category() -> None:
    scorer = by_category({"math": "numeric", "city": exact_match()}, default=contains())
    assert scorer(answer("4"), {"category": "math", "expected": 4})["score"] is True
    assert scorer(answer("Paris"), {"category": "city", "expected": "Paris"}) is True
    assert scorer(answer("a Paris b"), {"category": "misc", "expected": "Paris"}) is True
    assert by_category({"math": numeric()})(answer("4"), {"category": "x"}) is None


def user_scorer(result: EvalResult, metadata: Any) -> dict[str, Any]:
    return {"score": len(result.text) / 10, "length": len(result.text)}


def test_scorers_by_name_and_by_import_path() -> None:
    assert resolve_scorer("exact_match")(answer("a"), {"expected": "A"}) is True
    assert resolve_scorer(f"{__name__}:user_scorer") is user_scorer
    assert resolve_scorer(user_scorer) is user_scorer
    with pytest.raises(ScorerError, match="unknown scorer"):
        resolve_scorer("nope")


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        "123456789012345678901234567890",
        "-9223372036854775809",
        "1e400",
        "-1e400",
        "1.5e-400",
        "0.1",
        "-0.0",
        '{"a": NaN, "b": Infinity}',
        '"\\ud800"',
        '"\\u00e9 \\ud83d\\ude00"',
        '"\ud83d\ude00"',
        '"a\\u0000b"',
        ' {"a": [1, 2.5e-3, true, null]} ',
    ],
)
def test_extract_json_reads_what_json_reads(text: str) -> None:
    """msgspec reads an answer first, ``json`` what msgspec refuses: the value is always the
    one ``json.loads`` gives (the same type, the same repr)."""
    import json

    expected = json.loads(text)
    got = extract_json(text)
    assert type(got) is type(expected) and repr(got) == repr(expected)


def test_extract_json_fails_clearly() -> None:
    assert extract_json("[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("nothing here")

"""The compiled schema check gives jsonschema's verdict, value for value, or declines."""

from __future__ import annotations

import math
import random
from typing import Any

import jsonschema
import pytest

from airflow_batches.evals._fastschema import compile_check

SCHEMAS: list[Any] = [
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 10},
    {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 3}},
    {"type": "array", "minItems": 1, "maxItems": 2, "items": True},
    {"properties": {"a": False}, "additionalProperties": {"type": "boolean"}},
    {"type": "string", "pattern": "^[a-c]+$", "format": "email", "title": "t"},
    {"type": "integer", "maximum": 3, "exclusiveMinimum": -1},
    {"required": ["x"], "$schema": "https://json-schema.org/draft/2020-12/schema"},
    True,
    False,
]
DECLINED: list[Any] = [
    {"enum": [1, 2]},
    {"$ref": "#/$defs/a", "$defs": {"a": {}}},
    {"anyOf": [{"type": "string"}]},
    {"type": "object", "patternProperties": {"^a": {}}},
    {"properties": {"a": {"const": 1}}},
    {"items": [{"type": "string"}]},
    {"minLength": True},
]


def values(rng: random.Random, depth: int = 0) -> Any:
    atoms = [
        None, True, False, 0, 1, -1, 2, 3, 9, 10, 11, 2.0, 2.5, -0.5, math.nan, 1e300,
        "", "a", "abc", "abcd", "xyz", "ab1",
    ]  # fmt: skip
    roll = rng.random()
    if depth > 2 or roll < 0.5:
        return rng.choice(atoms)
    if roll < 0.75:
        return [values(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["name", "age", "a", "x", "b"]
    return {k: values(rng, depth + 1) for k in rng.sample(keys, rng.randrange(len(keys) + 1))}


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_the_verdict_is_jsonschemas(schema: Any) -> None:
    check = compile_check(schema)
    assert check is not None
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(31)
    seen = {True: 0, False: 0}
    named = [{"name": n, "age": a} for n in ("a", "", 3) for a in (1, 2.0, 2.5, True, None)]
    for value in [*named, *(values(rng) for _ in range(3000))]:
        verdict = validator.is_valid(value)
        assert check(value) is verdict, (schema, value)
        seen[verdict] += 1
    if schema not in (True, False):
        assert seen[True] and seen[False]  # both verdicts were exercised


def test_named_answers_of_the_eval_set() -> None:
    check = compile_check(SCHEMAS[0])
    assert check is not None
    assert check({"name": "Bruno", "age": 81})
    assert check({"name": "Bruno", "age": 81.0})  # an integral float is an integer
    assert not check({"name": "Bruno", "age": True})
    assert not check({"name": "Bruno", "age": 81, "x": 1})
    assert not check({"name": "Bruno"})


@pytest.mark.parametrize("schema", DECLINED, ids=range(len(DECLINED)))
def test_other_schemas_are_left_to_jsonschema(schema: Any) -> None:
    assert compile_check(schema) is None

"""``json_schema``'s two validators: the compiled one's "valid", ``jsonschema``'s verdict on
the rest and its message; and no schema is ever fetched from elsewhere."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.evals import EvalResult, Evaluation, EvaluationError, ScorerError, json_schema
from airflow_batches.evals._json_checks import SchemaChecker, schema_checker
from tests.evals import lines as L

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def answer(text: str) -> EvalResult:
    return EvalResult(L.succeeded("q1", text)["result"], custom_id="q1")


def reference(schema: Any, value: Any) -> str | None:
    """What ``json_schema`` said before the compiled validator: jsonschema alone."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(value))
    if not errors:
        return None
    first = min(errors, key=lambda e: list(e.absolute_path))
    return ("/".join(str(p) for p in first.absolute_path) or "(root)") + f": {first.message}"


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


CASES = [
    (PERSON, {"name": "Ada", "age": 36}),
    (PERSON, {"name": "Ada", "age": "36"}),
    (PERSON, {"name": "Ada"}),
    (PERSON, {"name": "Ada", "age": 36, "extra": 1}),
    (PERSON, [1, 2]),
    ({"type": "integer"}, 10**30),
    ({"type": "integer"}, 1.0),
    ({"type": "number"}, float("nan")),  # json.loads reads NaN; the compiled one refuses it
    ({"type": "number", "maximum": 1}, float("inf")),
    ({"pattern": r"^\d+$"}, "٣"),  # a Unicode digit: Python's \d takes it
    ({"pattern": "^a$"}, "a\n"),  # Python's $ matches before a final newline
    ({"pattern": r"(?P<x>a)(?P=x)"}, "aa"),  # Python-only syntax: no compiled validator
    ({"type": "array", "uniqueItems": True}, [1, True]),
    ({"type": "array", "uniqueItems": True}, [1, 1.0]),
    ({"type": "string", "maxLength": 2}, "éé"),
    ({"type": "string", "format": "email"}, "not an email"),  # formats are annotations
    ({"type": "array", "items": {"$ref": "#"}}, nested(100)),
    ({"$ref": "https://json-schema.org/draft/2020-12/schema"}, {"type": 5}),
    ({"$ref": "https://json-schema.org/draft/2020-12/schema"}, {"type": "string"}),
    (
        {"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False},
        {"a": 1, "b": 2},
    ),
    ({"prefixItems": [{"type": "string"}], "items": False}, ["a", 1]),
    ({"$defs": {"n": {"type": "integer"}}, "items": {"$ref": "#/$defs/n"}}, [1, "x"]),
    (  # a $ref by the schema's own $id: resolved in place, nothing fetched
        {
            "$id": "https://example.com/person",
            "$defs": {"n": {"type": "integer"}},
            "properties": {"age": {"$ref": "https://example.com/person#/$defs/n"}},
        },
        {"age": "x"},
    ),
    (
        {
            "$id": "https://example.com/a",
            "$defs": {"b": {"$id": "b", "type": "string"}},
            "$ref": "b",
        },
        1,
    ),
]


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_every_verdict_and_message_is_jsonschemas(schema: Any, value: Any) -> None:
    assert SchemaChecker(schema).first_error(value) == reference(schema, value)


def test_a_valid_answer_costs_only_the_compiled_check() -> None:
    checker = SchemaChecker(PERSON)
    assert checker.fast is not None

    class Unused:
        def is_valid(self, value: Any) -> bool:
            raise AssertionError("jsonschema was asked about a valid answer")

    reference_validator = checker.slow
    checker.slow = Unused()
    assert checker.first_error({"name": "Ada", "age": 36}) is None
    checker.slow = reference_validator
    assert checker.first_error({"name": "Ada"}) == "(root): 'age' is a required property"
    assert SchemaChecker({"pattern": r"(?P<x>a)(?P=x)"}).fast is None  # jsonschema judges alone


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    """A server that would hand out a schema, and the paths it was asked for."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps({"type": "string"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/person.json", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_ref_is_never_fetched_and_the_request_is_named(
    schema_server: tuple[str, list[str]],
) -> None:
    url, asked = schema_server
    evaluation = Evaluation(json_schema(schema_key="schema"), load_price_table())
    line = L.succeeded("q9", '"Ada"', metadata={"schema": {"$ref": url}})
    with pytest.raises(EvaluationError, match=rf"'q9'.*Unresolvable: {url}"):
        evaluation.add(json.dumps(line).encode())
    # A schema given to the scorer is refused when the scorer is made: at the DAG's parse,
    # before any batch is paid for.
    with pytest.raises(ScorerError, match=rf"\$ref {url} is outside it.*\$defs"):
        json_schema({"type": "object", "properties": {"p": {"$ref": url}}})
    inner = {"$defs": {"n": {"type": "integer"}}, "properties": {"p": {"$ref": "#/$defs/n"}}}
    assert json_schema(inner)(answer('{"p": 1}'), {}) == {"score": True}
    assert schema_checker({"$ref": url}).fast is None
    assert asked == []


def test_a_schema_is_kept_by_its_meaning_and_never_confused_with_another() -> None:
    # Kept by its JSON as written (no sort) and by its sorted JSON: the same schema in another
    # key order shares the validators; 1 and true are other schemas (true is not a number).
    one = schema_checker({"type": "integer", "const": 1})
    assert schema_checker({"type": "integer", "const": 1}) is one
    assert schema_checker({"const": 1, "type": "integer"}) is one
    truth = schema_checker({"type": "integer", "const": True})
    assert truth is not one
    assert one.first_error(1) is None and one.first_error(True) is not None
    assert truth.first_error(1) is not None

"""Strict decoding of one request line: the fast path and the careful path agree."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from airflow_batches.jobs.prepare import _request_json as _decode
from airflow_batches.jobs.prepare import decode_line
from airflow_batches.jobs.prepare._request_json import LINE, audit


@pytest.fixture
def careful_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    original = _decode._careful

    def spy(line: bytes) -> Any:
        calls.append(line)
        return original(line)

    monkeypatch.setattr(_decode, "_careful", spy)
    return calls


@pytest.mark.parametrize(
    "line",
    [
        b'{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":[]}}',
        b'{"custom_id": "a", "params": {"model": "m", "max_tokens": 1}}',
        b'{"custom_id":"a","params":{"x":"caf\xc3\xa9 \xf0\x9f\x98\x80 a:b:c","y:z":[{"k:":":"}]}}',
        b'{"custom_id":"a","params":{"x":"\\ud83d\\ude00 \\n \\"q\\": 1"}}',
        b'{"custom_id":"a","params":{"x":[[[[[[[[[[1]]]]]]]]]],"n":-0,"f":1e308}}',
    ],
)
def test_valid_lines_take_the_fast_path(line: bytes, careful_calls: list[bytes]) -> None:
    value, faults = decode_line(line)
    assert faults == []
    assert value == json.loads(line)
    assert careful_calls == []


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"a":1,"a":2}', "a"),
        (b'{"a":{"b":1,"b":2}}', "a.b"),
        (b'{"a":[{"b":1},{"c":1,"c":{"d":":"}}]}', "a[1].c"),
        (b'{"a":1,"\\u0061":2}', "a"),
        (b'{"a:":1,"a:":2}', "['a:']"),
        (b'{"a":"x:y","a":"z"}', "a"),
        (b'{"a":"\\u003a","b":{"c":1,"c":2}}', "b.c"),
    ],
)
def test_duplicate_keys_are_caught_and_named(line: bytes, field: str) -> None:
    _, faults = decode_line(line)
    assert [f.field for f in faults] == [field]
    assert "duplicate key" in faults[0].message


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (b'{"a":"\xff"}', LINE, "invalid UTF-8"),
        (b'{"a":"\xed\xb0\x80"}', LINE, "surrogate"),
        (b'{"a":"\\udc00"}', "a", "lone surrogate"),
        (b'{"a":NaN}', "a", "NaN"),
        (b'{"a":1e999}', "a", "out of range"),
        (b'{"a":' + b"7" * 4400 + b"}", "a", "4400 digits"),
        (b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", LINE, "levels"),
        (b'{"a":"\xef\xbb\xbf"}', LINE, "byte-order mark"),
        (b'{"a":1} {}', LINE, "data after"),
    ],
)
def test_what_the_fast_parser_refuses_is_named_by_the_careful_one(
    line: bytes, field: str, words: str
) -> None:
    _, faults = decode_line(line)
    assert len(faults) == 1
    assert faults[0].field == field and words in faults[0].message


def test_depth_the_fast_parser_allows_is_measured() -> None:
    """Between MAX_NESTING (100) and the parser's own limit (200) the walk refuses it; past
    200 the parser does, and the careful path names the field all the same."""
    line = b'{"a":{"b":' + b"[" * 120 + b"]" * 120 + b"}}"
    _, faults = decode_line(line)
    assert len(faults) == 1
    assert faults[0].field.startswith("a.b[0]") and "100 levels" in faults[0].message
    _, faults = decode_line(b'{"a":{"b":' + b"[" * 250 + b"]" * 250 + b"}}")
    assert len(faults) == 1 and faults[0].field.startswith("a.b[0]")
    _, faults = decode_line(b'{"a":{"b":' + b"[" * 98 + b"]" * 98 + b"}}")
    assert faults == []


def test_a_high_recursion_limit_lets_no_deep_line_through() -> None:
    """The fast parser stops at its own depth and the careful one measures before parsing,
    whatever ``sys.getrecursionlimit()`` allows."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)
    try:
        _, faults = decode_line(b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    finally:
        sys.setrecursionlimit(before)
    assert [(f.field, "levels" in f.message) for f in faults] == [(LINE, True)]


@pytest.mark.parametrize(
    ("line", "exotic"),
    [
        (b'{"a":[0.5,1,"1e5"]}', False),
        (b'{"a":[{"b":1e-05}]}', True),
        (b'{"a":1E+2}', False),
        (b'{"a":1E+20}', True),
        (b'{"a":10000000000000000.0}', True),
        (b"0.00001", True),
        (b"0.5", False),
    ],
)
def test_floats_written_with_an_exponent_are_noticed(line: bytes, exotic: bool) -> None:
    """Such a value is encoded again as json.dumps writes it, not by msgspec."""
    value, faults, noticed = _decode.decode_request(line)
    assert faults == [] and value == json.loads(line)
    assert noticed is exotic


@pytest.mark.parametrize("line", [b'{"a":[1,{"b":-1e400}]}', b"1e400", b"[2e308]"])
def test_numbers_past_a_double_are_refused_wherever_they_are(line: bytes) -> None:
    _, faults = decode_line(line)
    assert len(faults) == 1 and "out of range" in faults[0].message


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.35:
        return rng.choice(["x", "a:b", ":", "é:", 1, -0.5, True, None, "\\", '"', "\n"])
    if roll < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["k", "k:", "é", "a", "b", "c", ":"]) + str(rng.randrange(3)): _random_value(
            rng, depth + 1
        )
        for _ in range(rng.randrange(4))
    }


def _scalar(value: Any, rng: random.Random) -> str:
    return _string(value, rng) if isinstance(value, str) else json.dumps(value)


def _string(text: str, rng: random.Random) -> str:
    out = json.dumps(text, ensure_ascii=rng.random() < 0.5)
    if ":" in out and rng.random() < 0.2:
        out = out.replace(":", "\\u003a", 1)
    return out


def _containers(value: Any) -> list[Any]:
    found = [value] if isinstance(value, dict | list) else []
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found += _containers(child)
    return found


def test_fast_and_careful_paths_agree_on_random_documents() -> None:
    """Duplicates anywhere, colons in keys and strings, escaped colons, random spacing.

    The stdlib decoder with a pairs hook is the reference for "has a duplicate key".
    """
    rng = random.Random(2026)
    flagged = 0
    for _ in range(3000):
        value = {"custom_id": "r", "params": _random_value(rng, 0)}
        dicts = [c for c in _containers(value) if isinstance(c, dict) and c]
        target = rng.choice(dicts) if rng.random() < 0.5 else None
        text = _encode_with_dup_in(value, target, rng)
        line = text.encode()
        pairs_dup: list[bool] = []

        def hook(pairs: list[tuple[str, Any]], seen: list[bool] = pairs_dup) -> dict[str, Any]:
            seen.append(len({k for k, _ in pairs}) != len(pairs))
            return dict(pairs)

        json.loads(text, object_pairs_hook=hook)
        has_dup = any(pairs_dup)
        _, faults = decode_line(line)
        assert bool(faults) == has_dup, text
        flagged += has_dup
    assert flagged > 500


def _encode_with_dup_in(value: Any, target: Any, rng: random.Random) -> str:
    space = rng.choice(["", " "])
    if isinstance(value, dict):
        members = [(_string(k, rng), _encode_with_dup_in(v, target, rng)) for k, v in value.items()]
        if value is target and members:
            members.insert(rng.randrange(len(members) + 1), rng.choice(members))
        return "{" + f",{space}".join(f"{k}{space}:{space}{v}" for k, v in members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode_with_dup_in(v, target, rng) for v in value) + "]"
    return _scalar(value, rng)


def test_audit_judges_python_values_with_paths() -> None:
    value = {
        "params": {
            "ok": [1, 2.5, "x", None, True],
            "nan": float("nan"),
            "inf": [float("-inf")],
            "key": {3: "x"},
            "text": "a\ud800",
            "obj": object(),
            "big": 2**50_000,
            "deep": _nest(120),
        }
    }
    faults = {f.field: f.message for f in audit(value)}
    assert set(faults) == {
        "params.nan",
        "params.inf[0]",
        "params.key",
        "params.text",
        "params.obj",
        "params.big",
        f"params.deep{'[0]' * 98}",
    }
    assert "is not a string" in faults["params.key"]
    assert "lone surrogate" in faults["params.text"]
    assert "digits" in faults["params.big"]


def _nest(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value

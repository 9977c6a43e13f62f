from __future__ import annotations

import io
import json
import pickle
from typing import Any

import pytest

from airflow_batches.jobs._prepare import (
    ENVELOPE_BYTES,
    Limits,
    RequestValidationError,
    RequestValidator,
    iter_shard_body,
    prepare,
    records_from_items,
    records_from_jsonl,
)


def req(cid: str, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"hello {cid}"}],
    }
    base.update(params)
    return {"custom_id": cid, "params": base}


def validator(**kw: Any) -> RequestValidator:
    kw.setdefault("anthropic_version", "2023-06-01")
    return RequestValidator(**kw)


def run(items: list[Any], **kw: Any) -> tuple[Any, bytes]:
    sink = io.BytesIO()
    v = kw.pop("validator", None) or validator(limits=kw.pop("limits", None))
    prepared = prepare(records_from_items(items), v, sink, **kw)
    return prepared, sink.getvalue()


def test_valid_requests_are_staged_one_per_line_and_fingerprinted() -> None:
    prepared, staged = run([req("a"), req("b")])
    lines = staged.splitlines()
    assert [json.loads(x)["custom_id"] for x in lines] == ["a", "b"]
    assert prepared.request_count == 2
    assert len(prepared.shards) == 1
    again, _ = run([req("a"), req("b")])
    other, _ = run([req("a"), req("c")])
    assert prepared.fingerprint == again.fingerprint != other.fingerprint


def test_every_problem_is_reported_with_location_custom_id_and_field() -> None:
    items = [
        req("ok"),
        req("bad id!"),
        req("ok"),  # duplicate
        req("nomax", max_tokens=0),
        req("str", max_tokens="5"),
        req("bool", max_tokens=True),
        req("streamy", stream=True),
        req("sdk", extra_body={"x": 1}),
        {"custom_id": "noparams"},
        {"params": req("x")["params"]},
        "not an object",
        req("nomsg", messages=[]),
        {"custom_id": "extra", "params": req("e")["params"], "foo": 1},
    ]
    with pytest.raises(RequestValidationError) as info:
        run(items)
    err = info.value
    text = str(err)
    assert err.total == 12
    assert "request 1 (custom_id 'bad id!'): custom_id" in text
    assert "request 2 (custom_id 'ok'): custom_id: is used by an earlier request" in text
    assert "request 3 (custom_id 'nomax'): params.max_tokens: must be >= 1" in text
    assert "request 4 (custom_id 'str'): params.max_tokens: must be an integer" in text
    assert "request 5 (custom_id 'bool'): params.max_tokens" in text
    assert "params.stream" in text
    assert "params.extra_body" in text
    assert "request 8 (custom_id 'noparams'): params: is required" in text
    assert "request 9: custom_id: is required" in text
    assert "request 10: (request): expected an object, got str" in text
    assert "params.messages: must be a non-empty list" in text
    assert "request 12 (custom_id 'extra'): foo: unknown field" in text
    assert "nothing was submitted" in text
    # Errors cross process boundaries in Airflow.
    clone = pickle.loads(pickle.dumps(err))
    assert clone.total == 12 and str(clone) == text


def test_skip_mode_leaves_invalid_requests_out_and_reports_them() -> None:
    prepared, staged = run([req("a"), req("b", max_tokens=0), req("c")], on_invalid="skip")
    assert [json.loads(x)["custom_id"] for x in staged.splitlines()] == ["a", "c"]
    assert prepared.rejected_count == 1
    assert prepared.rejected[0].custom_id == "b"


def test_nothing_valid_is_an_error_even_when_skipping() -> None:
    with pytest.raises(RequestValidationError, match="1 invalid"):
        run([req("b", max_tokens=0)], on_invalid="skip")
    with pytest.raises(RequestValidationError, match="no requests"):
        run([])


def test_defaults_fill_only_what_a_request_leaves_out_and_connection_model_comes_last() -> None:
    v = validator(
        defaults={"max_tokens": 99, "system": "be brief"},
        default_model="claude-from-connection",
    )
    items = [
        {"custom_id": "a", "params": {"messages": [{"role": "user", "content": "x"}]}},
        {
            "custom_id": "b",
            "params": {
                "model": "mine",
                "max_tokens": 5,
                "system": [{"type": "text", "text": "own"}],
                "messages": [{"role": "user", "content": "y"}],
            },
        },
    ]
    _, staged = run(items, validator=v)
    a, b = (json.loads(x)["params"] for x in staged.splitlines())
    assert a == {
        "max_tokens": 99,
        "system": "be brief",
        "messages": [{"role": "user", "content": "x"}],
        "model": "claude-from-connection",
    }
    assert b["model"] == "mine" and b["max_tokens"] == 5
    assert b["system"] == [{"type": "text", "text": "own"}]


def test_unknown_params_pass_through_untouched() -> None:
    params = {
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "future_param": {"nested": [1, 2.5, "é"]},
    }
    _, staged = run([req("a", **params)])
    sent = json.loads(staged)["params"]
    for key, value in params.items():
        assert sent[key] == value


def test_jsonl_lines_without_changes_are_sent_byte_for_byte() -> None:
    raw = b'{"custom_id": "a",  "params": {"model":"m","max_tokens":1.0e0,"messages":[]}}\n'
    # max_tokens 1.0e0 is a float: invalid, and reported by line number.
    with pytest.raises(RequestValidationError, match=r"line 1 .*max_tokens"):
        prepare(records_from_jsonl(io.BytesIO(raw)), validator(), io.BytesIO())
    good = (
        b'\xef\xbb\xbf{"custom_id": "a",  "params": {"model":"m","max_tokens":3,'
        b'"messages":[{"role":"user","content":"\\u00e9"}]}}\r\n\n'
    )
    sink = io.BytesIO()
    prepare(records_from_jsonl(io.BytesIO(good)), validator(), sink)
    assert sink.getvalue() == good[3:].split(b"\r\n")[0] + b"\n"


def test_invalid_json_and_nan_are_reported_by_line() -> None:
    data = b'{"custom_id":"a"\n\n{"custom_id":"b","params":{"max_tokens":NaN}}\n'
    with pytest.raises(RequestValidationError) as info:
        prepare(records_from_jsonl(io.BytesIO(data)), validator(), io.BytesIO())
    text = str(info.value)
    assert "line 1: (line): not valid JSON" in text
    assert "line 3: (line): not valid JSON" in text


def test_params_removed_by_a_version_are_named_with_the_version() -> None:
    v = validator(anthropic_version="2026-10-21")
    with pytest.raises(RequestValidationError) as info:
        run([req("a", temperature=0.5, top_k=3)], validator=v)
    text = str(info.value)
    assert "params.temperature: is not accepted by anthropic-version 2026-10-21" in text
    assert "params.top_k" in text
    assert "validated for anthropic-version 2026-10-21" in text
    # The same request is fine on the older version.
    run([req("a", temperature=0.5)])


def test_shards_split_on_request_count() -> None:
    prepared, _ = run([req(f"r{i}") for i in range(7)], limits=Limits(max_requests=3))
    assert [s.count for s in prepared.shards] == [3, 3, 1]
    assert [s.first for s in prepared.shards] == [0, 3, 6]


def test_shards_split_on_exact_body_bytes_and_bodies_are_valid_json() -> None:
    items = [req(f"r{i}", messages=[{"role": "user", "content": "x" * (i * 7)}]) for i in range(40)]
    _, staged = run(items)
    sizes = [len(line) for line in staged.splitlines()]
    limit = ENVELOPE_BYTES + sum(sizes[:5]) + 4  # exactly five requests fit the first batch
    prepared, staged = run(items, limits=Limits(max_bytes=limit))
    assert prepared.shards[0].count == 5
    bodies = []
    for shard in prepared.shards:
        body = b"".join(iter_shard_body(lambda: io.BytesIO(staged), shard, chunk_size=100))
        assert len(body) == shard.body_bytes <= limit
        bodies.append(json.loads(body)["requests"])
    assert [r["custom_id"] for body in bodies for r in body] == [f"r{i}" for i in range(40)]


def test_a_request_larger_than_a_batch_is_an_error() -> None:
    with pytest.raises(RequestValidationError, match="bytes encoded; a batch body is limited"):
        run(
            [req("big", messages=[{"role": "user", "content": "x" * 500}])],
            limits=Limits(max_bytes=200),
        )


def test_bad_defaults_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="stream"):
        validator(defaults={"stream": True})
    with pytest.raises(ValueError, match="custom_id"):
        validator(defaults={"custom_id": "x"})


def test_extra_checks_and_observers_see_params_with_defaults() -> None:
    seen: list[tuple[str, str, int]] = []

    def no_high_temperature(params: Any) -> list[tuple[str, str]]:
        if params.get("temperature", 0) > 1:
            return [("temperature", "too hot for this test")]
        return []

    validator = RequestValidator(
        anthropic_version="2023-06-01",
        defaults={"model": "m", "max_tokens": 5},
        checks=[no_high_temperature],
        observers=[lambda cid, params, line: seen.append((cid, params["model"], len(line)))],
    )
    msgs = [{"role": "user", "content": "hi"}]
    ok = validator.check("request 0", {"custom_id": "a", "params": {"messages": msgs}})
    bad = validator.check(
        "request 1", {"custom_id": "b", "params": {"messages": msgs, "temperature": 2}}
    )
    assert isinstance(ok, tuple)
    assert seen == [("a", "m", len(ok[1]))]
    assert isinstance(bad, list)
    assert [(p.field, p.custom_id) for p in bad] == [("params.temperature", "b")]

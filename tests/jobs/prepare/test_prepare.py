from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
from typing import Any

import pytest

from airflow_batches.api._envelope import ENVELOPE_BYTES
from airflow_batches.jobs.prepare import (
    Limits,
    RequestValidationError,
    RequestValidator,
    iter_shard_body,
    prepare,
    records_from_items,
    records_from_jsonl,
)
from airflow_batches.jobs.prepare._shards import CustomIds


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
    assert "request 10: (request): expected an object, got a string" in text
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
    assert "line 1 (custom_id 'a'): (line): not valid JSON" in text
    assert "line 3 (custom_id 'b'): params.max_tokens: NaN is not valid JSON" in text


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


def test_custom_id_uniqueness_is_exact_even_inside_one_bucket() -> None:
    """Digests that share a bucket, and one whose bytes straddle two stored ones."""
    a1 = b"\x00\x00" + b"\x01" * 6 + b"\x00\x00" + b"\x02" * 6
    a2 = b"\x00\x00" + b"\x03" * 6 + b"\x04" * 8
    b = a1[8:] + a2[:8]  # in a1 + a2, misaligned

    class Buckets(CustomIds):
        _IN_A_SET = 0  # straight to the buckets

    for ids in (CustomIds(), Buckets()):
        assert ids.add_digest(a1) and ids.add_digest(a2) and ids.add_digest(b)
        assert not ids.add_digest(a1) and not ids.add_digest(b)
        assert a1 in ids and b in ids and a1[::-1] not in ids
        assert ids.count == 3


def test_many_distinct_ids_are_all_accepted_and_every_repeat_refused() -> None:
    class Small(CustomIds):
        _IN_A_SET = 10_000  # from a set to buckets at 10,000 ids, as a job does at 131,072
        _GROW_AT = 2  # split the buckets at 8,192 ids, as a large job does at 524,288

    for ids in (CustomIds(), Small()):
        names = [f"id-{i}" for i in range(50_000)]
        assert all(ids.add(name) for name in names[:30_000])
        assert not any(ids.add(name) for name in names[:30_000:97])
        assert all(ids.add(name) for name in names[30_000:])
        assert not any(ids.add(name) for name in names[::89])
        assert ids.count == 50_000
    assert ids._set is None and len(ids._buckets) == 65536


def test_defaults_are_spliced_into_the_users_own_bytes() -> None:
    v = validator(defaults={"max_tokens": 7, "system": "s"}, default_model="conn-model")
    line = (
        b'{"params": {"messages":[{"role":"user","content":"caf\\u00e9 \xc3\xa9"}],'
        b' "temperature": 1.0e0, "top_k": -0}, "custom_id": "a"}'
    )
    seen: list[Any] = []
    v.observers = (lambda cid, params, encoded: seen.append((cid, dict(params), encoded)),)
    cid, staged = v.check("line 1", line)  # type: ignore[misc]
    assert cid == "a"
    assert staged == (
        b'{"custom_id":"a","params":{"max_tokens":7,"system":"s","model":"conn-model",'
        b'"messages":[{"role":"user","content":"caf\\u00e9 \xc3\xa9"}],'
        b' "temperature": 1.0e0, "top_k": -0}}'
    )
    assert json.loads(staged)["params"] == {**seen[0][1]}
    assert seen[0][2] == staged and seen[0][1]["model"] == "conn-model"
    empty = v.check("line 2", b'{"custom_id":"b","params":{ }}')
    assert isinstance(empty, list)  # no messages: still judged after the defaults
    v2 = validator(
        defaults={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    )
    _, staged2 = v2.check("line 3", b'{"custom_id":"c","params":{ }}')  # type: ignore[misc]
    assert json.loads(staged2) == {
        "custom_id": "c",
        "params": {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
    }


def test_defaults_that_json_cannot_hold_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="defaults: temperature: nan"):
        validator(defaults={"temperature": float("nan")})
    with pytest.raises(ValueError, match="defaults: metadata: key 1 is not a string"):
        validator(defaults={"metadata": {1: "x"}})


def test_the_error_message_stays_bounded_and_counts_the_rest() -> None:
    items = [req(f"r{i}", max_tokens=0) for i in range(3000)] + [req("x" * 100_000)]
    with pytest.raises(RequestValidationError) as info:
        run(items)
    err = info.value
    text = str(err)
    assert len(text) < 2000
    assert err.total == 3001
    shown = text.count("\n  request ")
    assert f"... and {3001 - shown} more" in text
    assert len(err.problems) == 1000  # the first ones are kept for the log
    assert all(len(str(p)) < 400 for p in err.problems)


def test_in_memory_requests_get_the_same_judgement_as_lines() -> None:
    items = [
        req("a", temperature=float("inf")),
        req("b", metadata={1: "x"}),
        req("c", messages=[{"role": "system", "content": "x"}]),
        req("d", max_tokens=10**5000),
        req("e", messages=[{"role": "user", "content": "\ud800"}]),
        {"custom_id": "f", "params": {**req("f")["params"], "t": object()}},
    ]
    with pytest.raises(RequestValidationError) as info:
        run(items)
    text = str(info.value)
    assert "request 0 (custom_id 'a'): params.temperature: inf is not valid JSON" in text
    assert "request 1 (custom_id 'b'): params.metadata: key 1 is not a string" in text
    assert "request 2 (custom_id 'c'): params.messages[0].role: 'system'" in text
    assert "request 3 (custom_id 'd'): params.max_tokens: out of range" in text
    assert "request 4 (custom_id 'e'): params.messages[0].content: holds a lone surrogate" in text
    assert "request 5 (custom_id 'f'): params.t: object is not a JSON value" in text


def test_staging_is_fingerprinted_exactly_across_blocks() -> None:
    items = [req(f"r{i}", messages=[{"role": "user", "content": "x" * 3000}]) for i in range(800)]
    prepared, staged = run(items)
    assert len(staged) > 2 << 20  # several staging blocks
    assert prepared.fingerprint == hashlib.sha256(staged).hexdigest()
    assert staged.count(b"\n") == 800


def test_a_failing_sink_fails_prepare_with_its_own_error() -> None:
    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    items = [req(f"r{i}", messages=[{"role": "user", "content": "x" * 3000}]) for i in range(800)]
    with pytest.raises(OSError, match="No space left"):
        prepare(records_from_items(items), validator(), Full())


def test_a_broken_file_fails_even_when_skipping_invalid_requests() -> None:
    """Skipping bad requests is fine; submitting the half of a truncated file is not."""
    lines = b"".join(json.dumps(req(f"r{i}")).encode() + b"\n" for i in range(20_000))
    truncated = gzip.compress(lines)[:-100]
    with pytest.raises(RequestValidationError, match="compressed data is broken"):
        prepare(
            records_from_jsonl(io.BytesIO(truncated)), validator(), io.BytesIO(), on_invalid="skip"
        )
    good_and_bad = json.dumps(req("a")).encode() + b"\n{oops\n"
    prepared = prepare(
        records_from_jsonl(io.BytesIO(good_and_bad)), validator(), io.BytesIO(), on_invalid="skip"
    )
    assert prepared.request_count == 1 and prepared.rejected_count == 1

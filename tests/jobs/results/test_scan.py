from __future__ import annotations

import json
import pickle
import tracemalloc
from typing import Any, get_args

import pytest

from airflow_batches.api._errors import BatchesError, ResponseValidationError
from airflow_batches.api._models import ErrorType
from airflow_batches.api._pricing import ModelPrice, PriceTable, load_price_table, usage_cost
from airflow_batches.jobs.results import ResultRecord, ResultTally, scan_result_line
from airflow_batches.jobs.results._scan import MalformedResultLineError, UnknownResultTypeError

SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"


def succeeded(custom_id: str = "req-1", model: str = SONNET, **usage: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "succeeded",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0, **usage},
            },
        },
    }


def errored(custom_id: str = "req-e", error_type: str = "overloaded_error") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": "nope"},
                "request_id": "req_011",
            },
        },
    }


def other(kind: str, custom_id: str = "req-x") -> dict[str, Any]:
    return {"custom_id": custom_id, "result": {"type": kind}}


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def scan(obj: dict[str, Any]) -> ResultRecord:
    return scan_result_line(raw(obj))


# --- scanner ----------------------------------------------------------------------------------


def test_succeeded_line_with_full_usage() -> None:
    record = scan(
        succeeded(
            input_tokens=120,
            output_tokens=45,
            cache_creation_input_tokens=300,
            cache_read_input_tokens=900,
            cache_creation={"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            server_tool_use={"web_search_requests": 3, "web_fetch_requests": 1},
            service_tier="batch",
            inference_geo="us",
        )
    )
    assert record == ResultRecord(
        custom_id="req-1",
        result_type="succeeded",
        model=SONNET,
        input_tokens=120,
        output_tokens=45,
        cache_creation_input_tokens=300,
        cache_write_5m_tokens=100,
        cache_write_1h_tokens=200,
        cache_read_input_tokens=900,
        web_search_requests=3,
        web_fetch_requests=1,
        inference_geo="us",
        service_tier="batch",
    )


def test_cache_writes_without_breakdown_are_5m() -> None:
    record = scan(succeeded(cache_creation_input_tokens=700))
    assert (record.cache_write_5m_tokens, record.cache_write_1h_tokens) == (700, 0)
    assert record.cache_creation_input_tokens == 700


def test_missing_and_null_usage_fields_are_zero() -> None:
    line = succeeded(cache_creation_input_tokens=None, cache_creation=None, server_tool_use=None)
    del line["result"]["message"]["usage"]["output_tokens"]
    record = scan(line)
    assert record.output_tokens == record.cache_write_5m_tokens == record.web_search_requests == 0
    assert record.inference_geo is None
    assert record.service_tier is None
    assert record.usage_missing  # a token count is missing: the line cannot be costed
    del line["result"]["message"]["usage"]
    assert scan(line) == ResultRecord(
        custom_id="req-1", result_type="succeeded", model=SONNET, usage_missing=True
    )
    assert not scan(succeeded()).usage_missing


def test_partial_breakdown_counts_missing_lifetime_as_zero() -> None:
    record = scan(succeeded(cache_creation={"ephemeral_1h_input_tokens": 50}))
    assert (record.cache_write_5m_tokens, record.cache_write_1h_tokens) == (0, 50)


@pytest.mark.parametrize("error_type", get_args(ErrorType))
def test_errored_line_keeps_its_error_type(error_type: str) -> None:
    record = scan(errored(error_type=error_type))
    assert record == ResultRecord(custom_id="req-e", result_type="errored", error_type=error_type)


def test_errored_line_with_an_unknown_or_missing_error_type() -> None:
    assert scan(errored(error_type="brand_new_error")).error_type == "brand_new_error"
    assert scan(other("errored")).error_type == "unknown"
    flat = {"custom_id": "a", "result": {"type": "errored", "error": {"type": "api_error"}}}
    assert scan(flat).error_type == "api_error"
    empty = {"custom_id": "a", "result": {"type": "errored", "error": {"type": "error"}}}
    assert scan(empty).error_type == "unknown"


@pytest.mark.parametrize("kind", ["canceled", "expired"])
def test_canceled_and_expired_lines(kind: str) -> None:
    assert scan(other(kind)) == ResultRecord(custom_id="req-x", result_type=kind)  # type: ignore[arg-type]


def test_unknown_fields_are_ignored_at_every_level() -> None:
    line = succeeded(input_tokens=5, output_tokens=6, brand_new_count=7)
    line["schema_version"] = 2
    line["result"]["trace"] = {"nested": [1, {"deep": None}]}
    line["result"]["message"]["container"] = {"id": "c"}
    line["result"]["message"]["usage"]["cache_creation"] = {
        "ephemeral_5m_input_tokens": 1,
        "ephemeral_1h_input_tokens": 2,
        "ephemeral_24h_input_tokens": 3,
    }
    line["result"]["message"]["usage"]["output_tokens_details"] = {"thinking_tokens": 4}
    record = scan(line)
    assert (record.input_tokens, record.output_tokens) == (5, 6)
    assert (record.cache_write_5m_tokens, record.cache_write_1h_tokens) == (1, 2)


def test_line_as_buffer_and_with_surrounding_whitespace() -> None:
    data = raw(other("expired"))
    assert scan_result_line(memoryview(data)).result_type == "expired"  # type: ignore[arg-type]
    assert scan_result_line(data + b"\r").result_type == "expired"


def test_multi_megabyte_line() -> None:
    line = succeeded(input_tokens=10, output_tokens=300_000)
    line["result"]["message"]["content"] = [
        {"type": "thinking", "thinking": 'ü\n"think" ' * 200_000, "signature": "s"},
        {"type": "text", "text": "x" * 6_000_000},
    ]
    data = raw(line)
    assert len(data) > 8_000_000
    record = scan_result_line(data)
    assert (record.model, record.output_tokens) == (SONNET, 300_000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "Input data was truncated"),
        (b"not json", "malformed"),
        (b'{"custom_id": "a", "result": {"type": "succeeded"', "truncated"),
        (b'{"result": {"type": "expired"}}', "missing required field `custom_id`"),
        (b'{"custom_id": "a"}', "missing required field `result`"),
        (b'{"custom_id": "a", "result": {}}', "missing required field `type`"),
        (b'{"custom_id": 7, "result": {"type": "expired"}}', "`$.custom_id`"),
        (b'{"custom_id": "a", "result": {"type": "paused"}}', "unknown result type 'paused'"),
        (b'{"custom_id": "a", "result": {"type": "succeeded"}}', "without message.model"),
        (
            raw(succeeded(input_tokens="12")),
            "Expected `int | null`, got `str` - at `$.result.message.usage.input_tokens`",
        ),
        (raw(succeeded(input_tokens=1.5)), "usage.input_tokens"),
        (b"[1, 2]", "Expected `object`, got `array`"),
    ],
)
def test_malformed_lines_name_batch_and_line(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedResultLineError) as info:
        scan_result_line(data, batch_id="msgbatch_01X", line_number=42)
    error = info.value
    assert str(error).startswith("result line 42 of batch msgbatch_01X is malformed: ")
    assert reason in str(error)
    assert (error.batch_id, error.line_number) == ("msgbatch_01X", 42)
    assert isinstance(error, ResponseValidationError)
    assert isinstance(error, BatchesError)


def test_malformed_error_without_location_pickles_and_keeps_a_short_excerpt() -> None:
    data = b'{"custom_id": "a", "result": {"type": "unheard_of"}, "pad": "' + b"z" * 10_000 + b'"}'
    with pytest.raises(MalformedResultLineError) as info:
        scan_result_line(data)
    error = info.value
    assert str(error).startswith("result line is malformed: unknown result type")
    assert len(error.excerpt) == 120
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnknownResultTypeError
    assert str(copy) == str(error)
    assert copy.excerpt == error.excerpt
    assert (copy.custom_id, copy.result_type) == ("a", "unheard_of")


# --- tally --------------------------------------------------------------------------------------


def lines_mix() -> list[dict[str, Any]]:
    return [
        succeeded("s1", SONNET, input_tokens=1000, output_tokens=500, cache_read_input_tokens=3000),
        succeeded(
            "s2",
            SONNET,
            input_tokens=200,
            output_tokens=100,
            cache_creation_input_tokens=800,
            cache_creation={"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 500},
            inference_geo="us",
        ),
        succeeded("s3", HAIKU, input_tokens=50, output_tokens=10, cache_creation_input_tokens=40),
        succeeded(
            "s4",
            HAIKU,
            input_tokens=5,
            output_tokens=5,
            server_tool_use={"web_search_requests": 2, "web_fetch_requests": 1},
        ),
        succeeded("s5", "acme-unpriced-1", input_tokens=77, output_tokens=33),
        errored("e1", "overloaded_error"),
        errored("e2", "invalid_request_error"),
        errored("e3", "overloaded_error"),
        other("canceled", "c1"),
        other("expired", "x1"),
        other("expired", "x2"),
    ]


def tally_of(objs: list[dict[str, Any]], prices: PriceTable | None = None) -> ResultTally:
    tally = ResultTally(prices)
    for obj in objs:
        tally.add(scan(obj))
    return tally


def test_counts_by_result_and_error_type() -> None:
    tally = tally_of(lines_mix())
    assert tally.lines == 11
    assert tally.counts == {"succeeded": 5, "errored": 3, "canceled": 1, "expired": 2}
    assert tally.error_counts == {"invalid_request_error": 1, "overloaded_error": 2}


def test_usage_by_model() -> None:
    usage = tally_of(lines_mix()).usage_by_model
    assert list(usage) == ["acme-unpriced-1", HAIKU, SONNET]
    sonnet = usage[SONNET]
    assert (sonnet.requests, sonnet.input_tokens, sonnet.output_tokens) == (2, 1200, 600)
    assert (sonnet.cache_write_5m_tokens, sonnet.cache_write_1h_tokens) == (300, 500)
    assert sonnet.cache_read_input_tokens == 3000
    haiku = usage[HAIKU]
    assert (haiku.cache_write_5m_tokens, haiku.web_search_requests) == (40, 2)
    assert haiku.web_fetch_requests == 1


def test_cost_equals_the_sum_of_per_line_costs() -> None:
    objs = lines_mix()
    table = load_price_table()
    expected = 0.0
    for obj in objs:
        result = obj["result"]
        if result["type"] != "succeeded":
            continue
        price = table.get(result["message"]["model"])
        if price is not None:
            expected += usage_cost(result["message"]["usage"], price)
    tally = tally_of(objs)
    assert tally.cost_usd == pytest.approx(expected, rel=1e-12)
    assert expected > 0
    costs = tally.cost_by_model()
    assert costs["acme-unpriced-1"] is None
    assert sum(c for c in costs.values() if c is not None) == pytest.approx(expected, rel=1e-12)
    assert tally.unpriced_models == ["acme-unpriced-1"]


def test_sonnet_cost_by_hand() -> None:
    # s1: 1000*3 + 500*15 + 3000*0.3 = 11400
    # s2 (us): (200*3 + 100*15 + 300*3.75 + 500*6) * 1.1 = 6225 * 1.1 = 6847.5
    tally = tally_of(lines_mix()[:2])
    assert tally.cost_usd == pytest.approx(0.5 * (11400 + 6847.5) / 1e6, rel=1e-12)


def test_only_succeeded_lines_are_billed() -> None:
    tally = tally_of([errored(), other("canceled"), other("expired")])
    assert tally.cost_usd == 0.0
    assert tally.usage_by_model == {}
    assert tally.to_dict()["models"] == {}


def test_unpriced_models_carry_their_usage_and_mark_cost_incomplete() -> None:
    summary = tally_of(lines_mix()).to_dict()
    assert summary["cost_complete"] is False
    assert summary["unpriced_models"] == ["acme-unpriced-1"]
    acme = summary["models"]["acme-unpriced-1"]
    assert (acme["input_tokens"], acme["output_tokens"], acme["cost_usd"]) == (77, 33, None)
    assert acme["priced_as"] is None
    assert summary["models"][HAIKU]["priced_as"] == "claude-haiku-4-5"


def test_custom_price_table_is_used() -> None:
    table = PriceTable(
        {
            "acme": ModelPrice(
                input=2,
                output=4,
                cache_write_5m=2.5,
                cache_write_1h=4,
                cache_read=0.2,
                web_search_per_1k=0,
            )
        }
    )
    tally = tally_of([succeeded(model="acme-20260101", input_tokens=10**6)], table)
    assert tally.cost_usd == pytest.approx(1.0)
    assert tally.to_dict()["cost_complete"] is True


def test_cache_hit_rate() -> None:
    tally = tally_of(lines_mix())
    # read / (input + writes + read) over succeeded lines of every model
    read = 3000
    prompt = (1000 + 200 + 50 + 5 + 77) + (800 + 40) + read
    assert tally.cache_hit_rate == pytest.approx(read / prompt)
    assert tally.usage_by_model[SONNET].cache_hit_rate == pytest.approx(3000 / (1200 + 800 + 3000))


def test_cache_hit_rate_with_zero_denominators() -> None:
    assert ResultTally().cache_hit_rate is None
    assert tally_of([errored(), other("expired")]).cache_hit_rate is None
    zero = tally_of([succeeded(input_tokens=0, output_tokens=12)])
    assert zero.cache_hit_rate is None
    assert zero.to_dict()["models"][SONNET]["cache_hit_rate"] is None
    assert tally_of([succeeded(cache_read_input_tokens=5)]).cache_hit_rate == 1.0
    assert tally_of([succeeded(input_tokens=5)]).cache_hit_rate == 0.0


def test_merge_equals_one_tally_and_is_associative() -> None:
    objs = lines_mix()
    parts = [objs[0:3], objs[3:7], objs[7:]]

    left = tally_of(parts[0])
    left.merge(tally_of(parts[1]))
    left.merge(tally_of(parts[2]))

    right_tail = tally_of(parts[1])
    right_tail.merge(tally_of(parts[2]))
    right = tally_of(parts[0])
    right.merge(right_tail)

    whole = tally_of(objs)
    assert left.to_dict() == right.to_dict() == whole.to_dict()
    assert left.usage_by_model == whole.usage_by_model
    assert left.cost_usd == pytest.approx(whole.cost_usd, rel=1e-12)


def test_merge_with_empty_and_order() -> None:
    objs = lines_mix()
    a, b = tally_of(objs[:5]), tally_of(objs[5:])
    a.merge(ResultTally())
    b.merge(tally_of(objs[:5]))
    assert a.to_dict()["counts"] == {"succeeded": 5, "errored": 0, "canceled": 0, "expired": 0}
    assert b.to_dict() == tally_of(objs).to_dict()


def test_to_dict_shape_order_and_rounding() -> None:
    summary = tally_of(lines_mix()).to_dict()
    assert list(summary) == [
        "lines",
        "counts",
        "error_counts",
        "models",
        "cost_usd",
        "standard_cost_usd",
        "saving_usd",
        "cost_complete",
        "unpriced_models",
        "cost_warnings",
        "cache_hit_rate",
    ]
    assert list(summary["counts"]) == ["succeeded", "errored", "canceled", "expired"]
    assert list(summary["models"][SONNET]) == [
        "requests",
        "input_tokens",
        "output_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_input_tokens",
        "web_search_requests",
        "web_fetch_requests",
        "cache_write_tokens",
        "cache_hit_rate",
        "priced_as",
        "price_source",
        "price_checked",
        "cost_usd",
        "standard_cost_usd",
        "saving_usd",
    ]
    assert summary["cost_usd"] == round(summary["cost_usd"], 6)
    assert json.loads(json.dumps(summary)) == summary
    # Same input, same bytes: the manifest diff between two runs is meaningful.
    again = json.dumps(tally_of(list(reversed(lines_mix()))).to_dict())
    assert again == json.dumps(summary)


def test_tally_pickles() -> None:
    tally = tally_of(lines_mix())
    assert pickle.loads(pickle.dumps(tally)).to_dict() == tally.to_dict()


def test_memory_does_not_grow_with_lines() -> None:
    record = scan(succeeded(input_tokens=123_456, output_tokens=7_890, cache_read_input_tokens=1))
    failure = scan(errored())
    tally = ResultTally()
    for _ in range(1000):  # warm up: every dict and counter object exists
        tally.add(record)
        tally.add(failure)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50_000):
            tally.add(record)
            tally.add(failure)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10_000
    assert tally.lines == 102_000

"""Wire models: strict requests, tolerant responses, results discriminated on ``type``."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from airflow_batches.api import (
    RESULT_LINE_ADAPTER,
    BatchRequest,
    CanceledResult,
    DeletedMessageBatch,
    ErroredResult,
    ExpiredResult,
    MessageBatch,
    MessageBatchPage,
    MessageParams,
    SucceededResult,
    encode_request_line,
    iter_create_body,
)
from tests.api.fakes import batch_json

PARAMS: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": []}

# Every kind of Messages parameter the client must pass through untouched.
RICH_PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 300000,
    "system": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {
                    "type": "text",
                    "text": "Décris l'image 🖼️",
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        }
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "metadata": {"user_id": "u-42"},
    "cache_control": {"type": "ephemeral"},
    "stop_sequences": ["\n\nHuman:"],
    "temperature": 0.7,
    "service_tier": "auto",
    "inference_geo": "us",
    "output_config": {"effort": "high"},
    "a_parameter_from_2027": {"nested": [1, 2.5, None, True, "ü"]},
    "stream": False,
}


def request(custom_id: str = "req-1", **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {**PARAMS, **params}}


@pytest.mark.parametrize(
    "custom_id", ["a", "A-z_0-9", "x" * 64, "row_000123", "-", "_"], ids=lambda s: s[:12]
)
def test_valid_custom_ids(custom_id: str) -> None:
    assert BatchRequest.model_validate(request(custom_id)).custom_id == custom_id


@pytest.mark.parametrize(
    "custom_id",
    ["", "x" * 65, "a b", "a.b", "a/b", "abc\n", "\nabc", "é", "a:b", "a+b", "🎉"],
    ids=repr,
)
def test_invalid_custom_ids(custom_id: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="custom_id"):
        BatchRequest.model_validate(request(custom_id))


@pytest.mark.parametrize("value", [0, -1, "16", 16.0, True, None], ids=repr)
def test_max_tokens_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match="max_tokens"):
        BatchRequest.model_validate(request(max_tokens=value))


def test_max_tokens_one_is_enough() -> None:
    assert BatchRequest.model_validate(request(max_tokens=1)).params.max_tokens == 1


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_required_params(missing: str) -> None:
    item = request()
    del item["params"][missing]
    with pytest.raises(pydantic.ValidationError, match=missing):
        BatchRequest.model_validate(item)


def test_empty_model_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="model"):
        BatchRequest.model_validate(request(model=""))


@pytest.mark.parametrize("value", [True, "true", 1])
def test_streaming_is_rejected(value: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match="stream"):
        BatchRequest.model_validate(request(stream=value))


def test_stream_false_is_harmless() -> None:
    assert BatchRequest.model_validate(request(stream=False)).params.model_extra == {
        "stream": False
    }


@pytest.mark.parametrize("key", ["extra_body", "extra_headers", "extra_query", "timeout", "betas"])
def test_sdk_only_keys_are_rejected(key: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=key):
        BatchRequest.model_validate(request(**{key: {}}))


def test_unknown_keys_beside_custom_id_and_params_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="metadata"):
        BatchRequest.model_validate({**request(), "metadata": {}})


def test_encoding_a_mapping_keeps_it_byte_for_byte() -> None:
    item = {"custom_id": "rich-1", "params": RICH_PARAMS}
    line = encode_request_line(item)
    assert line == json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(line) == item
    assert "Décris l'image 🖼️".encode() in line  # not \u-escaped: the size is the real size


def test_encoding_a_model_keeps_every_param() -> None:
    item = {"custom_id": "rich-1", "params": RICH_PARAMS}
    model = BatchRequest.model_validate(item)
    assert json.loads(encode_request_line(model)) == item
    # Through the model too, floats, None and nested unknowns come back exactly.
    assert json.loads(encode_request_line(model))["params"]["a_parameter_from_2027"] == {
        "nested": [1, 2.5, None, True, "ü"]
    }


def test_encoding_validates_first() -> None:
    with pytest.raises(pydantic.ValidationError):
        encode_request_line(request("bad id"))


def test_message_params_constructed_directly() -> None:
    params = MessageParams.model_validate({**PARAMS, "tools": [{"name": "t"}]})
    assert params.model_extra == {"tools": [{"name": "t"}]}


def test_create_body_framing() -> None:
    lines = [encode_request_line(request(f"r{i}")) for i in range(3)]
    body = b"".join(iter_create_body(lines))
    assert json.loads(body) == {"requests": [request(f"r{i}") for i in range(3)]}
    assert b"".join(iter_create_body([])) == b'{"requests":[]}'
    # It is a generator of pieces: the body is never built whole by the framing itself.
    pieces = list(iter_create_body(lines))
    assert pieces[0] == b'{"requests":['
    assert pieces[-1] == b"]}"
    assert len(pieces) == 2 + 3 + 2


# --- responses ------------------------------------------------------------------------------


def test_message_batch_tolerates_unknown_fields() -> None:
    raw = batch_json(
        "msgbatch_x",
        "ended",
        brand_new_field={"a": 1},
        request_counts={
            "processing": 0,
            "succeeded": 3,
            "errored": 1,
            "canceled": 0,
            "expired": 0,
            "paused": 0,
        },
    )
    batch = MessageBatch.model_validate(raw)
    assert batch.is_ended
    assert batch.request_counts.total == 4
    assert batch.model_extra == {"brand_new_field": {"a": 1}}
    assert batch.created_at.tzinfo is not None


def test_message_batch_nullable_fields_may_be_absent() -> None:
    raw = batch_json()
    for key in ("ended_at", "archived_at", "cancel_initiated_at", "results_url"):
        del raw[key]
    batch = MessageBatch.model_validate(raw)
    assert batch.results_url is None
    assert not batch.is_ended


def test_message_batch_rejects_an_unknown_status() -> None:
    with pytest.raises(pydantic.ValidationError):
        MessageBatch.model_validate(batch_json(status="paused"))


def test_page_and_deleted() -> None:
    page = MessageBatchPage.model_validate(
        {"data": [batch_json()], "has_more": False, "first_id": "a", "last_id": "a", "x": 1}
    )
    assert page.data[0].id == "msgbatch_01"
    deleted = DeletedMessageBatch.model_validate(
        {"id": "msgbatch_01", "type": "message_batch_deleted"}
    )
    assert deleted.id == "msgbatch_01"


SUCCEEDED = {
    "custom_id": "a",
    "result": {
        "type": "succeeded",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "hi", "citations": None},
                {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"c": "x"}},
                {"type": "a_block_from_2027", "payload": [1]},
            ],
            "stop_reason": "a_stop_reason_from_2027",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_creation_input_tokens": 7,
                "cache_read_input_tokens": 3,
                "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 3},
                "server_tool_use": {"web_search_requests": 2},
                "service_tier": "batch",
                "inference_geo": "us",
            },
            "container": None,
        },
    },
}
ERRORED = {
    "custom_id": "b",
    "result": {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
            "request_id": None,
        },
    },
}


@pytest.mark.parametrize(
    ("raw", "cls"),
    [
        (SUCCEEDED, SucceededResult),
        (ERRORED, ErroredResult),
        ({"custom_id": "c", "result": {"type": "canceled"}}, CanceledResult),
        ({"custom_id": "d", "result": {"type": "expired"}}, ExpiredResult),
    ],
)
def test_result_lines_are_discriminated_on_type(raw: dict[str, Any], cls: type) -> None:
    line = RESULT_LINE_ADAPTER.validate_json(json.dumps(raw))
    assert type(line.result) is cls
    assert line.custom_id == raw["custom_id"]


def test_succeeded_result_keeps_unknown_blocks_and_usage_fields() -> None:
    line = RESULT_LINE_ADAPTER.validate_python(SUCCEEDED)
    assert isinstance(line.result, SucceededResult)
    message = line.result.message
    assert [b.type for b in message.content] == [
        "thinking",
        "text",
        "tool_use",
        "a_block_from_2027",
    ]
    assert message.content[3].model_extra == {"payload": [1]}
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 3
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_fetch_requests == 0
    # Nothing is lost on the way back out.
    assert line.model_dump(mode="json", exclude_unset=True) == SUCCEEDED


def test_errored_result_fields() -> None:
    line = RESULT_LINE_ADAPTER.validate_python(ERRORED)
    assert isinstance(line.result, ErroredResult)
    assert line.result.error.error.type == "invalid_request_error"
    assert line.result.error.error.message == "max_tokens: too big"


def test_unknown_result_type_is_an_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        RESULT_LINE_ADAPTER.validate_python({"custom_id": "x", "result": {"type": "paused"}})


def test_response_models_are_frozen() -> None:
    batch = MessageBatch.model_validate(batch_json())
    with pytest.raises(pydantic.ValidationError):
        batch.id = "other"  # type: ignore[misc]

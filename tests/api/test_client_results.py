"""Results: following ``results_url`` as given, raw bytes and parsed lines, any chunking."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    AsyncClient,
    CanceledResult,
    Client,
    ErroredResult,
    ExpiredResult,
    MessageBatch,
    NotFoundError,
    ResponseValidationError,
    ResultsExpiredError,
    ResultsNotReadyError,
    SucceededResult,
)
from tests.api.fakes import (
    API_KEY,
    BASE_URL,
    Chunks,
    Driver,
    FakeAPI,
    batch_json,
    ended_batch,
    error_reply,
    reply,
)

OTHER_URL = "http://results.elsewhere.test:8443/files/msgbatch_01/results?token=a%2Fb%3D&beta=true"
OTHER_ORIGIN = "http://Results.Elsewhere.test:8443"


def succeeded(custom_id: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 4},
            },
        },
    }


RESULTS = [
    succeeded("r1", "naïve café"),
    succeeded("r2", "日本語 🎉"),
    {
        "custom_id": "r3",
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": None,
            },
        },
    },
    {"custom_id": "r4", "result": {"type": "canceled"}},
    {"custom_id": "r5", "result": {"type": "expired"}},
]
LINES = [json.dumps(r, ensure_ascii=False).encode() for r in RESULTS]
BODY = b"\n".join(LINES) + b"\n"
JSONL = {"content-type": "application/x-jsonl"}


def results_reply(body: bytes = BODY, *, chunk: int | None = None) -> Callable[..., Any]:
    if chunk is None:
        return reply(200, content=body, headers=JSONL)

    def answer(request: httpx.Request) -> httpx.Response:
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        return httpx.Response(200, headers=JSONL, stream=Chunks(pieces))

    return answer


def test_results_follow_results_url_exactly(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, ended_batch(results_url=OTHER_URL)), results_reply())
    lines = connect(api, results_origins=[OTHER_ORIGIN]).results("msgbatch_01")
    retrieve, download = api.requests
    assert str(retrieve.url) == f"{BASE_URL}/v1/messages/batches/msgbatch_01"
    assert str(download.url) == OTHER_URL
    assert download.method == "GET"
    assert download.headers["accept"] == "application/binary"
    assert download.headers["x-api-key"] == API_KEY
    assert download.headers["anthropic-version"] == "2023-06-01"
    assert [line.custom_id for line in lines] == ["r1", "r2", "r3", "r4", "r5"]
    assert [type(line.result) for line in lines] == [
        SucceededResult,
        SucceededResult,
        ErroredResult,
        CanceledResult,
        ExpiredResult,
    ]
    first = lines[0].result
    assert isinstance(first, SucceededResult)
    assert first.message.content[0].model_extra == {"text": "naïve café"}


def test_results_of_a_batch_object_skip_the_retrieve(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_reply())
    batch = MessageBatch.model_validate(ended_batch(results_url=OTHER_URL))
    assert len(connect(api, results_origins=f"{OTHER_ORIGIN}/").results(batch)) == 5
    assert [str(r.url) for r in api.requests] == [OTHER_URL]


def test_raw_lines(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, ended_batch()), results_reply())
    assert connect(api).iter_result_lines("msgbatch_01") == LINES
    assert str(api.last.url) == f"{BASE_URL}/v1/messages/batches/msgbatch_01/results"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_chunks_split_mid_line_and_mid_character(
    connect: Callable[..., Driver], chunk: int
) -> None:
    api = FakeAPI(results_reply(chunk=chunk))
    batch = MessageBatch.model_validate(ended_batch())
    client = connect(api)
    assert client.iter_result_lines(batch) == LINES
    api.answers.append(results_reply(chunk=chunk))
    assert [line.custom_id for line in client.results(batch)] == ["r1", "r2", "r3", "r4", "r5"]


def test_crlf_and_no_trailing_newline(connect: Callable[..., Driver]) -> None:
    body = b"\r\n".join(LINES)
    api = FakeAPI(results_reply(body, chunk=5))
    batch = MessageBatch.model_validate(ended_batch())
    assert connect(api).iter_result_lines(batch) == LINES


def test_a_multi_megabyte_line(connect: Callable[..., Driver]) -> None:
    huge = succeeded("huge", "ü" * (2 * 1024 * 1024) + "🎉" * 100_000)
    big_line = json.dumps(huge, ensure_ascii=False).encode()
    assert len(big_line) > 4 * 1024 * 1024
    api = FakeAPI(results_reply(LINES[0] + b"\n" + big_line + b"\n" + LINES[1], chunk=65_537))
    batch = MessageBatch.model_validate(ended_batch())
    lines = connect(api).results(batch)
    assert [line.custom_id for line in lines] == ["r1", "huge", "r2"]
    result = lines[1].result
    assert isinstance(result, SucceededResult)
    assert result.message.content[0].model_extra == {
        "text": huge["result"]["message"]["content"][0]["text"]
    }


def test_raw_bytes_are_passed_through_unchanged() -> None:
    pieces = [BODY[i : i + 9] for i in range(0, len(BODY), 9)]
    api = FakeAPI(lambda r: httpx.Response(200, headers=JSONL, stream=Chunks(pieces)))
    batch = MessageBatch.model_validate(ended_batch())
    with (
        Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client,
        client.stream_results(batch) as stream,
    ):
        got = list(stream.iter_bytes())
        assert stream.batch is batch
    assert got == pieces  # chunk for chunk: nothing buffered, nothing re-encoded
    assert stream.response.is_closed


@pytest.mark.anyio
async def test_async_raw_bytes_are_passed_through_unchanged() -> None:
    pieces = [BODY[i : i + 11] for i in range(0, len(BODY), 11)]
    api = FakeAPI(lambda r: httpx.Response(200, headers=JSONL, stream=Chunks(pieces)))
    batch = MessageBatch.model_validate(ended_batch())
    async with AsyncClient(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client:
        async with client.stream_results(batch) as stream:
            got = [chunk async for chunk in stream.aiter_bytes()]
        assert stream.response.is_closed
        api.answers.append(lambda r: httpx.Response(200, headers=JSONL, stream=Chunks(pieces)))
        async with client.stream_results(batch) as stream:
            lines = [line async for line in stream.aiter_lines()]
    assert got == pieces
    assert lines == LINES


def test_leaving_early_closes_the_download() -> None:
    api = FakeAPI(results_reply(chunk=4))
    batch = MessageBatch.model_validate(ended_batch())
    with Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client:
        with client.stream_results(batch) as stream:
            first = next(stream.iter_lines())
        assert first == LINES[0]
        assert stream.response.is_closed


@pytest.mark.parametrize("status", ["in_progress", "canceling"])
def test_results_before_the_end(connect: Callable[..., Driver], status: str) -> None:
    api = FakeAPI(reply(200, batch_json("msgbatch_3", status)))
    with pytest.raises(ResultsNotReadyError) as caught:
        connect(api).results("msgbatch_3")
    assert type(caught.value) is ResultsNotReadyError
    assert caught.value.batch_id == "msgbatch_3"
    assert status in str(caught.value)
    assert len(api.requests) == 1  # only the retrieve


def test_ended_without_a_results_url(connect: Callable[..., Driver]) -> None:
    raw = ended_batch()
    raw["results_url"] = None
    api = FakeAPI()
    with pytest.raises(ResultsNotReadyError):
        connect(api).results(MessageBatch.model_validate(raw))
    assert api.requests == []


def test_results_after_archival(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, ended_batch("msgbatch_old", archived_at="2026-11-30T10:00:00Z")))
    with pytest.raises(ResultsExpiredError) as caught:
        connect(api).iter_result_lines("msgbatch_old")
    assert caught.value.batch_id == "msgbatch_old"
    assert "29 days" in str(caught.value)
    assert len(api.requests) == 1


def test_results_download_is_retried(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(503), error_reply(529, "overloaded_error"), results_reply(chunk=10))
    client = connect(api)
    batch = MessageBatch.model_validate(ended_batch())
    assert client.iter_result_lines(batch) == LINES
    assert len(api.requests) == 3
    assert len(client.sleeps) == 2


def test_results_404_is_not_retried(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(404, "not_found_error", "no results"))
    with pytest.raises(NotFoundError):
        connect(api).results(MessageBatch.model_validate(ended_batch()))
    assert len(api.requests) == 1


def test_an_error_answer_cut_mid_body_is_retried(connect: Callable[..., Driver]) -> None:
    broken = Chunks([b'{"type":"error",', b"never"], fail_after=1)
    api = FakeAPI(lambda r: httpx.Response(503, stream=broken), results_reply())
    client = connect(api)
    assert client.iter_result_lines(MessageBatch.model_validate(ended_batch())) == LINES
    assert len(api.requests) == 2
    assert len(client.sleeps) == 1


def test_a_download_cut_mid_stream_is_a_connection_error(connect: Callable[..., Driver]) -> None:
    pieces = [BODY[:50], BODY[50:100], BODY[100:]]
    api = FakeAPI(lambda r: httpx.Response(200, headers=JSONL, stream=Chunks(pieces, fail_after=2)))
    with pytest.raises(APIConnectionError, match="dropped"):
        connect(api).iter_result_lines(MessageBatch.model_validate(ended_batch()))
    # Half a download is not retried behind the caller's back: lines were already handed out.
    assert len(api.requests) == 1


def test_a_malformed_line_is_a_response_validation_error(connect: Callable[..., Driver]) -> None:
    secret_payload = b'{"custom_id":"r9","result":{"type":"exploded","data":"SECRET-CONTENT"}}'
    api = FakeAPI(results_reply(LINES[0] + b"\n" + secret_payload + b"\n"))
    with pytest.raises(ResponseValidationError) as caught:
        connect(api).results(MessageBatch.model_validate(ended_batch("msgbatch_q")))
    text = str(caught.value)
    assert "msgbatch_q" in text
    assert "line 2" in text
    assert "SECRET-CONTENT" not in text


def test_a_non_json_line_is_a_response_validation_error(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_reply(b"<html>oops</html>\n"))
    with pytest.raises(ResponseValidationError, match="line 1"):
        connect(api).results(MessageBatch.model_validate(ended_batch()))


def test_a_relative_results_url_means_the_base_url(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_reply())
    batch = MessageBatch.model_validate(ended_batch(results_url="v1/messages/batches/b/results"))
    assert connect(api).iter_result_lines(batch) == LINES
    assert str(api.last.url) == f"{BASE_URL}/v1/messages/batches/b/results"

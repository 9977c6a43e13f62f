"""Results downloads that survive a cut mid-body: Range resumes, verified restarts, the budget."""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    AsyncClient,
    Client,
    MessageBatch,
    ResultsChangedError,
    RetryPolicy,
)
from airflow_batches.api._results import (
    ResultsDownload,
    ResultsStream,
    body_start,
    body_total,
    content_range,
)
from tests.api.fakes import (
    API_KEY,
    BASE_URL,
    Chunks,
    Driver,
    FakeAPI,
    ended_batch,
    error_reply,
)

LINES = [
    json.dumps({"custom_id": f"r{i}", "result": {"type": "canceled"}, "n": "é" * i}).encode()
    for i in range(8)
]
BODY = b"\n".join(LINES) + b"\n"
CHUNK = 16
FIRST_LINE_END = len(LINES[0]) + 1
BATCH = MessageBatch.model_validate(ended_batch())
NO_JITTER = RetryPolicy(jitter=0.0)


def cut_after(end: int) -> int:
    """A cut at the first chunk boundary past ``end``: mid-line, once that line has begun."""
    return (end // CHUNK + 1) * CHUNK


def results_answer(
    body: bytes = BODY,
    *,
    cut_at: int | None = None,
    honour_range: bool = True,
    headers: dict[str, str] | None = None,
    status: int | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    """A results server: honours ``Range: bytes=N-`` (or not), cuts its body after ``cut_at``."""

    def answer(request: httpx.Request) -> httpx.Response:
        start, code = 0, 200
        hdrs = {"content-type": "application/x-jsonl", **(headers or {})}
        asked = request.headers.get("range")
        if asked and honour_range:
            start, code = int(asked.removeprefix("bytes=").rstrip("-")), 206
            hdrs.setdefault("content-range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        part = body[start:]
        hdrs.setdefault("content-length", str(len(part)))
        pieces = [part[i : i + CHUNK] for i in range(0, len(part), CHUNK)]
        fail = None if cut_at is None else cut_at // CHUNK
        return httpx.Response(status or code, headers=hdrs, stream=Chunks(pieces, fail_after=fail))

    return answer


def lines_of(driver: Driver, **kwargs: Any) -> list[bytes]:
    result: list[bytes] = driver.iter_result_lines(BATCH, **kwargs)
    return result


# --- resuming through both clients ----------------------------------------------------------


def test_a_cut_is_resumed_from_the_last_whole_line(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)), results_answer())
    client = connect(api, retry=NO_JITTER)
    assert lines_of(client, resumes=1) == LINES
    first, second = api.requests
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={FIRST_LINE_END}-"
    assert "if-range" not in second.headers
    assert second.headers["x-api-key"] == API_KEY
    assert str(second.url) == str(first.url)
    assert client.sleeps == [0.5]


def test_bytes_come_in_whole_lines(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)), results_answer())
    chunks: list[bytes] = connect(api).iter_result_bytes(BATCH, resumes=1)
    assert b"".join(chunks) == BODY
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def test_a_server_ignoring_the_range_is_read_again_and_checked(
    connect: Callable[..., Driver],
) -> None:
    api = FakeAPI(
        results_answer(cut_at=cut_after(3 * FIRST_LINE_END)),
        results_answer(honour_range=False),
    )
    assert lines_of(connect(api), resumes=1) == LINES
    assert api.requests[1].headers["range"].startswith("bytes=")


def test_other_bytes_on_the_restart_are_a_changed_error() -> None:
    other = BODY.replace(b'"r0"', b'"x0"')
    assert len(other) == len(BODY)
    api = FakeAPI(
        results_answer(cut_at=cut_after(FIRST_LINE_END)),
        results_answer(other, honour_range=False),
    )
    got: list[bytes] = []
    with (
        Client(
            api_key=API_KEY, base_url=BASE_URL, transport=api.transport, sleep=lambda s: None
        ) as c,
        pytest.raises(ResultsChangedError) as caught,
    ):
        got.extend(c.iter_result_lines(BATCH, resumes=1))
    assert got == LINES[:1]  # what was handed out is the first answer's, intact
    assert caught.value.batch_id == BATCH.id
    assert "differ" in str(caught.value)


def test_another_total_length_is_a_changed_error(connect: Callable[..., Driver]) -> None:
    longer = BODY + LINES[0] + b"\n"
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)), results_answer(longer))
    with pytest.raises(ResultsChangedError, match=f"{len(longer)} bytes long"):
        lines_of(connect(api), resumes=1)


def test_a_restart_shorter_than_what_was_read_is_a_changed_error(
    connect: Callable[..., Driver],
) -> None:
    api = FakeAPI(
        results_answer(cut_at=cut_after(3 * FIRST_LINE_END)),
        # No length announced, so only the re-read itself can tell it is short.
        lambda r: httpx.Response(200, stream=Chunks([BODY[:FIRST_LINE_END]])),
    )
    with pytest.raises(ResultsChangedError, match="end within"):
        lines_of(connect(api), resumes=1)


def test_a_206_of_another_range_is_not_trusted(connect: Callable[..., Driver]) -> None:
    wrong = {"content-range": f"bytes 0-{len(BODY) - 1}/{len(BODY)}"}
    api = FakeAPI(
        results_answer(cut_at=cut_after(FIRST_LINE_END)),
        results_answer(headers=wrong),
        results_answer(),
    )
    assert lines_of(connect(api), resumes=1) == LINES
    assert "range" in api.requests[1].headers
    assert "range" not in api.requests[2].headers


def test_a_416_starts_again_from_the_beginning(connect: Callable[..., Driver]) -> None:
    refused = error_reply(416, "invalid_request_error", headers={"content-range": "bytes */9"})
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)), refused, results_answer())
    client = connect(api)
    assert lines_of(client, resumes=1) == LINES
    assert "range" not in api.requests[2].headers
    assert len(client.sleeps) == 1  # the 416 is no failure to back off from


def test_a_strong_etag_is_sent_as_if_range(connect: Callable[..., Driver]) -> None:
    tagged = {"etag": '"v1-abc"'}
    api = FakeAPI(
        results_answer(cut_at=cut_after(FIRST_LINE_END), headers=tagged),
        results_answer(headers=tagged),
    )
    assert lines_of(connect(api), resumes=1) == LINES
    assert api.requests[1].headers["if-range"] == '"v1-abc"'


def test_a_weak_etag_is_not(connect: Callable[..., Driver]) -> None:
    weak = {"etag": 'W/"v1"'}
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END), headers=weak), results_answer())
    assert lines_of(connect(api), resumes=1) == LINES
    assert "if-range" not in api.requests[1].headers


def test_an_encoded_answer_is_restarted_never_ranged(connect: Callable[..., Driver]) -> None:
    packed = gzip.compress(BODY * 40)
    pieces = [packed[i : i + 64] for i in range(0, len(packed), 64)]
    headers = {"content-encoding": "gzip", "content-length": str(len(packed))}

    def gzipped(fail_after: int | None) -> Callable[[httpx.Request], httpx.Response]:
        return lambda r: httpx.Response(
            200, headers=headers, stream=Chunks(pieces, fail_after=fail_after)
        )

    api = FakeAPI(gzipped(len(pieces) // 2), gzipped(None))
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 320, "expired": 0}
    batch = MessageBatch.model_validate(ended_batch(request_counts=counts))
    assert connect(api).iter_result_lines(batch, resumes=1) == LINES * 40
    assert "range" not in api.requests[1].headers


def test_the_budget_counts_cuts_without_progress(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        results_answer(cut_at=cut_after(FIRST_LINE_END)),
        *[results_answer(cut_at=CHUNK) for _ in range(2)],  # cut again inside the same line
    )
    client = connect(api, retry=NO_JITTER)
    with pytest.raises(APIConnectionError) as caught:
        lines_of(client, resumes=2)
    assert len(api.requests) == 3
    assert client.sleeps == [0.5, 1.0]
    text = str(caught.value)
    assert f"results of batch {BATCH.id}" in text
    assert "cut 3 times" in text
    assert f"{FIRST_LINE_END} of {len(BODY)} bytes" in text
    assert "dropped" in text
    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert API_KEY not in text
    assert API_KEY not in pickle.dumps(caught.value).decode("latin-1")


def test_progress_renews_the_budget(connect: Callable[..., Driver]) -> None:
    # Every answer is cut in the line after the one it completes: seven cuts, one resume each.
    answers = [results_answer(cut_at=cut_after(len(line) + 1)) for line in LINES[:-1]]
    api = FakeAPI(*answers, results_answer())
    client = connect(api, retry=NO_JITTER)
    assert lines_of(client, resumes=1) == LINES
    assert len(api.requests) == len(LINES)
    assert client.sleeps == [0.5] * (len(LINES) - 1)


def test_opening_again_is_retried_like_any_call(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        results_answer(cut_at=cut_after(FIRST_LINE_END)),
        error_reply(529, "overloaded_error", headers={"retry-after": "0.25"}),
        results_answer(),
    )
    client = connect(api, retry=NO_JITTER)
    assert lines_of(client, resumes=1) == LINES
    assert client.sleeps == [0.5, 0.25]
    assert api.requests[2].headers["range"] == f"bytes={FIRST_LINE_END}-"


def test_without_resumes_a_cut_is_raised_as_it_always_was(
    connect: Callable[..., Driver],
) -> None:
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)))
    with pytest.raises(APIConnectionError, match="dropped") as caught:
        connect(api).iter_result_bytes(BATCH)
    assert "results of batch" not in str(caught.value)
    assert len(api.requests) == 1


def test_a_body_shorter_than_announced_is_a_cut(connect: Callable[..., Driver]) -> None:
    short = results_answer(BODY[:FIRST_LINE_END], headers={"content-length": str(len(BODY))})
    api = FakeAPI(short, results_answer())
    assert lines_of(connect(api), resumes=1) == LINES
    assert api.requests[1].headers["range"] == f"bytes={FIRST_LINE_END}-"


def test_parsed_results_resume_too(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(results_answer(cut_at=cut_after(FIRST_LINE_END)), results_answer())
    results = connect(api).results(BATCH, resumes=1)
    assert [r.custom_id for r in results] == [f"r{i}" for i in range(len(LINES))]


# --- opening from an offset by hand ---------------------------------------------------------


def test_stream_results_from_an_offset() -> None:
    api = FakeAPI(results_answer(), results_answer(honour_range=False), results_answer())
    with Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client:
        with client.stream_results(BATCH, offset=10) as stream:
            assert (stream.offset, stream.total) == (10, len(BODY))
            assert b"".join(stream.iter_bytes()) == BODY[10:]
        with client.stream_results(BATCH, offset=10) as stream:
            assert (stream.offset, stream.total) == (0, len(BODY))
            assert b"".join(stream.iter_bytes()) == BODY
        with client.stream_results(BATCH) as stream:
            assert stream.offset == 0
            assert stream.etag is None
            assert stream.encoding is None
    assert [r.headers.get("range") for r in api.requests] == ["bytes=10-", "bytes=10-", None]


@pytest.mark.anyio
async def test_async_stream_results_from_an_offset() -> None:
    refused = error_reply(416, "invalid_request_error")
    api = FakeAPI(results_answer(), refused, results_answer())
    async with AsyncClient(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client:
        async with client.stream_results(BATCH, offset=len(BODY) - 5) as stream:
            assert stream.offset == len(BODY) - 5
            assert b"".join([c async for c in stream.aiter_bytes()]) == BODY[-5:]
        async with client.stream_results(BATCH, offset=len(BODY) + 5) as stream:
            assert stream.offset == 0
            assert b"".join([c async for c in stream.aiter_bytes()]) == BODY
    assert len(api.requests) == 3


def test_a_negative_offset_is_refused_before_anything_is_sent() -> None:
    api = FakeAPI()
    with (
        Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client,
        pytest.raises(ValueError, match="offset"),
        client.stream_results(BATCH, offset=-1),
    ):
        pass
    assert api.requests == []


# --- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 10-99/100", (10, 99, 100)),
        ("BYTES 0-0/1", (0, 0, 1)),
        ("bytes 5-9/*", (5, 9, None)),
        ("bytes 10-99/50", None),
        ("bytes 9-5/100", None),
        ("bytes */100", None),
        ("items 0-1/2", None),
        ("", None),
        (None, None),
    ],
)
def test_content_range(value: str | None, parsed: tuple[int, int, int | None] | None) -> None:
    assert content_range(value) == parsed


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", BASE_URL))


def test_body_start_and_total() -> None:
    ranged = response(206, **{"content-range": "bytes 40-99/100", "content-length": "60"})
    assert (body_start(ranged, 40), body_total(ranged)) == (40, 100)
    assert body_start(ranged, 41) is None
    assert body_start(response(200, **{"content-length": "100"}), 40) == 0
    assert body_total(response(200, **{"content-length": "100"})) == 100
    assert body_start(response(416), 40) is None
    assert body_start(response(206), 40) is None
    encoded = response(206, **{"content-range": "bytes 40-99/100", "content-encoding": "gzip"})
    assert body_start(encoded, 40) is None
    assert body_total(encoded) is None
    assert body_start(response(200), 0) == 0
    assert body_total(response(200)) is None


def stream_of(status: int = 200, offset: int = 0, **headers: str) -> ResultsStream:
    return ResultsStream(BATCH, response(status, **headers), offset=offset)


def test_the_download_hands_out_whole_lines_once() -> None:
    download = ResultsDownload(BATCH, resumes=0)
    download.begin(stream_of(**{"content-length": "12"}))
    assert download.feed(b"abc") == b""
    assert download.feed(b"\nde") == b"abc\n"
    assert download.feed(b"f\ng\n") == b"def\ng\n"
    assert download.feed(b"hi") == b""
    assert download.finish() == b"hi"
    assert download.delivered == 12


def test_the_download_verifies_a_restart() -> None:
    download = ResultsDownload(BATCH, resumes=1, rand=lambda: 0.0)
    download.begin(stream_of(**{"content-length": "8"}))
    assert download.feed(b"ab\ncd") == b"ab\n"
    assert download.cut(APIConnectionError("cut")) == 0.5
    assert download.reopen() == (3, None)
    download.begin(stream_of(**{"content-length": "8"}))  # a 200: everything again
    assert download.feed(b"a") == b""
    assert download.feed(b"b\ncd\n") == b"cd\n"
    assert download.feed(b"e\n") == b"e\n"
    assert download.finish() == b""


def test_a_cut_without_resumes_is_the_same_error() -> None:
    download = ResultsDownload(BATCH, resumes=0)
    error = APIConnectionError("cut", method="GET", url="u")
    with pytest.raises(APIConnectionError) as caught:
        download.cut(error)
    assert caught.value is error


def test_resumes_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="resumes"):
        ResultsDownload(BATCH, resumes=-1)


def test_the_changed_error_pickles() -> None:
    error = ResultsChangedError("results of batch b changed", batch_id="b")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.batch_id, str(again)) == (ResultsChangedError, "b", str(error))

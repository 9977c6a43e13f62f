"""Range requests on the results endpoint, the ``cut`` fault, resumed downloads over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from airflow_batches.api import APIConnectionError, AsyncClient, Client, MessageBatch
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import requests


class Recording(httpx.HTTPTransport):
    """The real transport, noting each request's Range and the status it got."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str | None, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append((request.headers.get("range"), response.status_code))
        return response


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str | None, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.seen.append((request.headers.get("range"), response.status_code))
        return response


@pytest.fixture
def ended(emulator: RunningEmulator, client: Client) -> tuple[MessageBatch, bytes]:
    """An ended batch of 40 requests, and its whole results body."""
    batch = client.create(requests(40))
    emulator.wait_ended(batch.id)
    batch = client.retrieve(batch.id)
    with client.stream_results(batch) as stream:
        body = b"".join(stream.iter_bytes())
    assert body.count(b"\n") == 40
    return batch, body


def drain(chunks: Iterator[bytes], into: bytearray) -> None:
    for chunk in chunks:
        into += chunk


def get(emulator: RunningEmulator, batch: MessageBatch, **headers: str) -> httpx.Response:
    auth = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    assert batch.results_url is not None
    return httpx.get(batch.results_url, headers={**auth, **headers})


def test_without_a_range_everything_with_its_length(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, body = ended
    answer = get(emulator, batch)
    assert answer.status_code == 200
    assert answer.content == body
    assert answer.headers["content-length"] == str(len(body))
    assert answer.headers["accept-ranges"] == "bytes"
    assert "content-range" not in answer.headers


@pytest.mark.parametrize(
    ("asked", "first", "last"),
    [("bytes=100-", 100, None), ("bytes=10-19", 10, 19), ("bytes=-25", -25, None)],
)
def test_a_range_is_a_206(
    emulator: RunningEmulator,
    ended: tuple[MessageBatch, bytes],
    asked: str,
    first: int,
    last: int | None,
) -> None:
    batch, body = ended
    start = first % len(body)
    end = len(body) - 1 if last is None else last
    answer = get(emulator, batch, range=asked)
    assert answer.status_code == 206
    assert answer.content == body[start : end + 1]
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{len(body)}"
    assert answer.headers["content-length"] == str(end - start + 1)


def test_a_range_past_the_end_is_a_416(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, body = ended
    answer = get(emulator, batch, range=f"bytes={len(body)}-")
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(body)}"
    assert answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "headers",
    [
        {"range": "bytes=0-5,10-20"},
        {"range": "bytes=20-10"},
        {"range": "lines=1-2"},
        {"range": "bytes=10-", "if-range": '"some-etag"'},
    ],
)
def test_what_cannot_be_honoured_is_everything(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes], headers: dict[str, str]
) -> None:
    batch, body = ended
    answer = get(emulator, batch, **headers)
    assert answer.status_code == 200
    assert answer.content == body


def test_the_cut_fault_stops_mid_body(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, body = ended
    emulator.configure(faults={"results": {"rate_cut": 1.0, "cut_fraction": 0.3, "max_count": 1}})
    got = bytearray()
    auth = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    assert batch.results_url is not None
    with httpx.stream("GET", batch.results_url, headers=auth) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(len(body))
        with pytest.raises(httpx.RemoteProtocolError):
            drain(answer.iter_raw(), got)
    assert bytes(got) == body[: int(len(body) * 0.3)]
    assert emulator.admin.stats()["endpoints"]["results"]["faults"] == {"cut": 1}
    assert get(emulator, batch).content == body  # the budget is spent: whole again


def test_the_client_resumes_a_cut_download_with_ranges(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, body = ended
    emulator.configure(faults={"results": {"rate_cut": 1.0, "max_count": 2}})
    transport = Recording()
    sleeps: list[float] = []
    with Client(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        transport=transport,
        sleep=sleeps.append,
    ) as client:
        lines = list(client.iter_result_lines(batch, resumes=3))
    assert lines == body.splitlines()
    (first, _), *resumed = transport.seen
    assert first is None
    assert [status for _, status in resumed] == [206, 206]
    offsets = [int(asked.removeprefix("bytes=").rstrip("-")) for asked, _ in resumed if asked]
    assert 0 < offsets[0] < offsets[1] < len(body)
    assert all(body[offset - 1 : offset] == b"\n" for offset in offsets)  # whole lines only
    assert len(sleeps) == 2


@pytest.mark.anyio
async def test_the_async_client_resumes_too(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, _ = ended
    emulator.configure(faults={"results": {"rate_cut": 1.0, "max_count": 1}})
    transport = AsyncRecording()

    async def no_sleep(seconds: float) -> None:
        return None

    async with AsyncClient(
        api_key=emulator.api_key, base_url=emulator.base_url, transport=transport, sleep=no_sleep
    ) as client:
        results = [line.custom_id async for line in client.results(batch, resumes=1)]
    assert sorted(results) == sorted(f"req-{i}" for i in range(40))
    assert [status for _, status in transport.seen] == [200, 206]


def test_without_resumes_the_cut_surfaces(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes], client: Client
) -> None:
    batch, body = ended
    emulator.configure(faults={"results": {"rate_cut": 1.0, "max_count": 1}})
    got: list[bytes] = []
    with pytest.raises(APIConnectionError):
        got.extend(client.iter_result_lines(batch))
    assert got == body.splitlines()[: len(got)]
    assert len(got) < 40


def test_a_budget_spent_names_the_batch(
    emulator: RunningEmulator, ended: tuple[MessageBatch, bytes]
) -> None:
    batch, _ = ended
    # Cut every answer before its first newline: no progress, ever.
    emulator.configure(faults={"results": {"rate_cut": 1.0, "cut_fraction": 0.001}})
    with (
        Client(
            api_key=emulator.api_key, base_url=emulator.base_url, sleep=lambda s: None
        ) as client,
        pytest.raises(APIConnectionError, match=f"results of batch {batch.id}") as caught,
    ):
        list(client.iter_result_lines(batch, resumes=2))
    assert "cut 3 times" in str(caught.value)
    assert emulator.admin.stats()["endpoints"]["results"]["faults"] == {"cut": 3}
    assert emulator.api_key not in str(caught.value)

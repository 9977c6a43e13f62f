"""Every endpoint, through both clients, against a scripted API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pydantic
import pytest

from airflow_batches.api import (
    AsyncClient,
    BatchRequest,
    Client,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
    OverloadedError,
    PermissionDeniedError,
    ResponseValidationError,
    encode_request_line,
    iter_create_body,
)
from tests.api.fakes import API_KEY, BASE_URL, Driver, FakeAPI, batch_json, error_reply, reply

PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "Grüße 👋"}],
    "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "u"},
    "future_param": {"x": [1, 2]},
}


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


# --- create ---------------------------------------------------------------------------------


def test_create_from_request_objects(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, batch_json("msgbatch_new")))
    items = [
        {"custom_id": "a", "params": PARAMS},
        BatchRequest.model_validate({"custom_id": "b", "params": PARAMS}),
    ]
    batch = connect(api).create(items)
    assert isinstance(batch, MessageBatch)
    assert batch.id == "msgbatch_new"
    sent = api.last
    assert (sent.method, sent.url.path) == ("POST", "/v1/messages/batches")
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "requests": [{"custom_id": "a", "params": PARAMS}, {"custom_id": "b", "params": PARAMS}]
    }
    # The exact bytes: compact, unescaped, every param untouched.
    expected = b"".join(iter_create_body(encode_request_line(i) for i in items))
    assert sent.content == expected
    assert "Grüße 👋".encode() in sent.content


def test_create_validates_before_sending(connect: Callable[..., Driver]) -> None:
    api = FakeAPI()
    client = connect(api)
    with pytest.raises(pydantic.ValidationError):
        client.create(
            [{"custom_id": "ok", "params": PARAMS}, {"custom_id": "no good", "params": {}}]
        )
    assert api.requests == []


def test_create_from_a_streamed_body(connect: Callable[..., Driver]) -> None:
    lines = [encode_request_line({"custom_id": f"r{i}", "params": PARAMS}) for i in range(50)]
    body = b"".join(iter_create_body(lines))
    calls: list[int] = []

    def factory() -> Iterator[bytes]:
        calls.append(1)
        return iter_create_body(iter(lines))

    api = FakeAPI(reply(200, batch_json()))
    connect(api).create_from_body(factory, content_length=len(body))
    sent = api.last
    assert sent.content == body
    assert sent.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in sent.headers
    assert sent.headers["content-type"] == "application/json"
    assert calls == [1]


def test_create_from_a_streamed_body_without_length_is_chunked(
    connect: Callable[..., Driver],
) -> None:
    api = FakeAPI(reply(200, batch_json()))
    connect(api).create_from_body(lambda: iter([b'{"requests":', b"[]}"]))
    assert api.last.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in api.last.headers
    assert api.last.content == b'{"requests":[]}'


def test_create_from_bytes(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, batch_json()))
    connect(api).create_from_body(
        b'{"requests":[]}', extra_headers={"anthropic-user-profile-id": "p1"}
    )
    assert api.last.content == b'{"requests":[]}'
    assert api.last.headers["content-length"] == "15"
    assert api.last.headers["anthropic-user-profile-id"] == "p1"


def test_body_factory_is_called_afresh_for_each_attempt(connect: Callable[..., Driver]) -> None:
    body_lines = [encode_request_line({"custom_id": f"r{i}", "params": PARAMS}) for i in range(3)]
    calls: list[int] = []

    def factory() -> Iterator[bytes]:
        calls.append(1)
        # A generator can be read only once: a retry must get a new one.
        yield from iter_create_body(body_lines)

    api = FakeAPI(
        error_reply(529, "overloaded_error"),
        error_reply(500),
        reply(200, batch_json()),
    )
    client = connect(api)
    client.create_from_body(factory)
    assert len(calls) == 3
    assert len(api.requests) == 3
    expected = b"".join(iter_create_body(body_lines))
    assert [r.content for r in api.requests] == [expected] * 3
    assert len(client.sleeps) == 2


def test_create_max_retries_per_call(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(default=error_reply(529, "overloaded_error"))
    client = connect(api, max_retries=5)
    with pytest.raises(OverloadedError):
        client.create_from_body(b"{}", max_retries=0)
    assert len(api.requests) == 1


@pytest.mark.anyio
async def test_async_create_from_an_async_body() -> None:
    calls: list[int] = []

    async def pieces() -> Any:
        calls.append(1)
        for piece in (b'{"requests":', b"[", b"]}"):
            yield piece

    api = FakeAPI(error_reply(503), reply(200, batch_json()))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncClient(
        api_key=API_KEY, base_url=BASE_URL, transport=api.transport, sleep=sleep
    ) as client:
        batch = await client.create_from_body(pieces, content_length=15)
    assert batch.id == "msgbatch_01"
    assert [r.content for r in api.requests] == [b'{"requests":[]}'] * 2
    assert api.last.headers["content-length"] == "15"
    assert len(calls) == 2
    assert len(waits) == 1


# --- retrieve, cancel, delete ---------------------------------------------------------------


def test_retrieve(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, batch_json("msgbatch_7", future={"x": 1})))
    batch = connect(api).retrieve("msgbatch_7")
    assert batch.id == "msgbatch_7"
    assert batch.model_extra == {"future": {"x": 1}}
    assert (api.last.method, str(api.last.url)) == (
        "GET",
        f"{BASE_URL}/v1/messages/batches/msgbatch_7",
    )
    assert api.last.content == b""


@pytest.mark.parametrize(
    "bad_id", ["", "a/b", "../x", "..", "a?b", "a#b", "a b", "b\u00e9", "x" * 129]
)
def test_batch_ids_cannot_escape_the_path(connect: Callable[..., Driver], bad_id: str) -> None:
    api = FakeAPI()
    with pytest.raises(ValueError, match="is not an identifier of the API's shape"):
        connect(api).retrieve(bad_id)
    assert api.requests == []


def test_cancel(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, batch_json("msgbatch_7", "canceling")))
    batch = connect(api).cancel("msgbatch_7")
    assert batch.processing_status == "canceling"
    assert (api.last.method, api.last.url.path) == (
        "POST",
        "/v1/messages/batches/msgbatch_7/cancel",
    )


def test_delete(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, {"id": "msgbatch_7", "type": "message_batch_deleted"}))
    deleted = connect(api).delete("msgbatch_7")
    assert isinstance(deleted, DeletedMessageBatch)
    assert deleted.id == "msgbatch_7"
    assert (api.last.method, api.last.url.path) == ("DELETE", "/v1/messages/batches/msgbatch_7")


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"id": 3}', b"[]", b'{"id": "x", "processing_status": "in_progress"}'],
)
def test_a_2xx_body_of_the_wrong_shape(connect: Callable[..., Driver], content: bytes) -> None:
    api = FakeAPI(reply(200, content=content, headers={"request-id": "req_shape"}))
    with pytest.raises(ResponseValidationError) as caught:
        connect(api).retrieve("msgbatch_1")
    assert caught.value.request_id == "req_shape"
    assert "MessageBatch" in str(caught.value)
    assert len(api.requests) == 1  # a bad body is not retried


# --- list -----------------------------------------------------------------------------------

ALL_IDS = [f"msgbatch_{n:02d}" for n in range(9, 0, -1)]  # newest first, as the API lists


def paging_api(ids: list[str] = ALL_IDS) -> FakeAPI:
    """Pages over ``ids`` like the API: after_id moves to older, before_id to newer."""

    def answer(request: httpx.Request) -> httpx.Response:
        q = query(request)
        limit = int(q.get("limit", 20))
        if "after_id" in q:
            start = ids.index(q["after_id"]) + 1
            chosen = ids[start : start + limit]
            more = start + limit < len(ids)
        elif "before_id" in q:
            end = ids.index(q["before_id"])
            chosen = ids[max(0, end - limit) : end]
            more = end - limit > 0
        else:
            chosen, more = ids[:limit], limit < len(ids)
        return httpx.Response(
            200,
            json={
                "data": [batch_json(i) for i in chosen],
                "has_more": more,
                "first_id": chosen[0] if chosen else None,
                "last_id": chosen[-1] if chosen else None,
            },
        )

    return FakeAPI(default=answer)


def test_list_pages_forwards_with_after_id(connect: Callable[..., Driver]) -> None:
    api = paging_api()
    batches = connect(api).list(limit=4)
    assert [b.id for b in batches] == ALL_IDS
    assert [query(r) for r in api.requests] == [
        {"limit": "4"},
        {"limit": "4", "after_id": "msgbatch_06"},
        {"limit": "4", "after_id": "msgbatch_02"},
    ]
    assert all(r.url.path == "/v1/messages/batches" for r in api.requests)


def test_list_pages_backwards_with_before_id(connect: Callable[..., Driver]) -> None:
    api = paging_api()
    batches = connect(api).list(limit=2, before_id="msgbatch_02")
    assert [b.id for b in batches] == [
        "msgbatch_04",
        "msgbatch_03",
        "msgbatch_06",
        "msgbatch_05",
        "msgbatch_08",
        "msgbatch_07",
        "msgbatch_09",
    ]
    assert [query(r) for r in api.requests] == [
        {"limit": "2", "before_id": "msgbatch_02"},
        {"limit": "2", "before_id": "msgbatch_04"},
        {"limit": "2", "before_id": "msgbatch_06"},
        {"limit": "2", "before_id": "msgbatch_08"},
    ]


def test_list_starting_after_an_id(connect: Callable[..., Driver]) -> None:
    api = paging_api()
    assert [b.id for b in connect(api).list(limit=5, after_id="msgbatch_05")] == ALL_IDS[5:]
    assert len(api.requests) == 1


def test_list_stops_on_an_empty_page_even_if_has_more(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        reply(200, {"data": [batch_json("a")], "has_more": True, "first_id": "a", "last_id": "a"}),
        reply(200, {"data": [], "has_more": True, "first_id": None, "last_id": None}),
    )
    assert [b.id for b in connect(api).list(limit=1)] == ["a"]
    assert len(api.requests) == 2


def test_list_without_first_and_last_id_uses_the_data(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(
        reply(200, {"data": [batch_json("a"), batch_json("b")], "has_more": True}),
        reply(200, {"data": [batch_json("c")], "has_more": False}),
    )
    assert [b.id for b in connect(api).list(limit=2)] == ["a", "b", "c"]
    assert query(api.last) == {"limit": "2", "after_id": "b"}


def test_list_of_nothing(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, {"data": [], "has_more": False, "first_id": None, "last_id": None}))
    assert connect(api).list() == []
    assert query(api.last) == {"limit": "20"}


def test_list_is_lazy() -> None:
    api = paging_api()
    with Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client:
        iterator = client.list(limit=3)
        assert api.requests == []
        first = [next(iterator) for _ in range(3)]
        assert len(api.requests) == 1
        next(iterator)
        assert len(api.requests) == 2
    assert [b.id for b in first] == ALL_IDS[:3]


def test_list_retries_a_failed_page(connect: Callable[..., Driver]) -> None:
    pages = paging_api()
    api = FakeAPI(
        lambda r: pages(r),
        error_reply(503),
        default=lambda r: pages(r),
    )
    client = connect(api)
    assert [b.id for b in client.list(limit=5)] == ALL_IDS
    assert [query(r).get("after_id") for r in api.requests] == [None, "msgbatch_05", "msgbatch_05"]
    assert len(client.sleeps) == 1


def test_list_page(connect: Callable[..., Driver]) -> None:
    api = paging_api()
    page = connect(api).list_page(limit=3, after_id="msgbatch_09")
    assert isinstance(page, MessageBatchPage)
    assert [b.id for b in page.data] == ALL_IDS[1:4]
    assert page.has_more is True
    assert (page.first_id, page.last_id) == ("msgbatch_08", "msgbatch_06")
    assert query(api.last) == {"limit": "3", "after_id": "msgbatch_09"}
    assert len(api.requests) == 1


def test_list_page_before(connect: Callable[..., Driver]) -> None:
    api = paging_api()
    page = connect(api).list_page(limit=2, before_id="msgbatch_05")
    assert [b.id for b in page.data] == ["msgbatch_07", "msgbatch_06"]
    assert query(api.last) == {"limit": "2", "before_id": "msgbatch_05"}


def test_error_mid_listing_propagates(connect: Callable[..., Driver]) -> None:
    pages = paging_api()
    api = FakeAPI(lambda r: pages(r), error_reply(403, "permission_error", "no"))
    with pytest.raises(PermissionDeniedError):
        connect(api).list(limit=5)
    assert len(api.requests) == 2


class StreamingReceiver(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Reads a request body chunk by chunk, noting how much the sender had produced by then."""

    def __init__(self, produced: list[bytes]) -> None:
        self.produced = produced
        self.seen: list[tuple[bytes, int]] = []

    def _answer(self) -> httpx.Response:
        return httpx.Response(200, json=batch_json())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        for chunk in request.stream:
            self.seen.append((chunk, len(self.produced)))
        return self._answer()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            self.seen.append((chunk, len(self.produced)))
        return self._answer()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_streamed_body_is_never_held_whole(kind: str) -> None:
    produced: list[bytes] = []
    pieces = [b'{"requests":['] + [b"x" * 1000] * 20 + [b"]}"]

    def factory() -> Iterator[bytes]:
        for piece in pieces:
            produced.append(piece)
            yield piece

    receiver = StreamingReceiver(produced)
    if kind == "sync":
        with Client(api_key=API_KEY, base_url=BASE_URL, transport=receiver) as client:
            client.create_from_body(factory)
    else:

        async def run() -> None:
            async with AsyncClient(
                api_key=API_KEY, base_url=BASE_URL, transport=receiver
            ) as client:
                await client.create_from_body(factory)

        asyncio.run(run())
    assert b"".join(chunk for chunk, _ in receiver.seen) == b"".join(pieces)
    # Each piece reached the wire before the next one was even produced.
    assert [count for _, count in receiver.seen] == list(range(1, len(pieces) + 1))

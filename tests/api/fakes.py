"""A scripted Message Batches API behind ``httpx.MockTransport``, and sync/async drivers.

The drivers let one test body exercise both ``Client`` and ``AsyncClient``: each call runs the
async client's coroutine (or drains its async iterator) to completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from airflow_batches.api import AsyncClient, Client

API_KEY = "sk-ant-api03-TEST-KEY-must-never-leak-5f7c1e"
BASE_URL = "https://api.batches.test"
CREATED_AT = "2026-11-01T10:00:00Z"
EXPIRES_AT = "2026-11-02T10:00:00Z"

Answer = Callable[[httpx.Request], httpx.Response]

# Loggers that might see a request: ours, httpx's and httpcore's. Airflow quietens httpx once it
# is imported, so each is opened up explicitly rather than through the root logger alone.
CHATTY_LOGGERS = ("", "airflow_batches", "httpx", "httpcore", "airflow")


@contextlib.contextmanager
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in CHATTY_LOGGERS:
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name or None))
        yield


def batch_json(
    batch_id: str = "msgbatch_01",
    status: str = "in_progress",
    *,
    results_url: str | None = None,
    archived_at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ended = status == "ended"
    return {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": 0 if ended else 2,
            "succeeded": 2 if ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": CREATED_AT,
        "expires_at": EXPIRES_AT,
        "ended_at": "2026-11-01T11:00:00Z" if ended else None,
        "archived_at": archived_at,
        "cancel_initiated_at": None,
        "results_url": results_url
        if results_url is not None or not ended
        else f"{BASE_URL}/v1/messages/batches/{batch_id}/results",
        **extra,
    }


def ended_batch(batch_id: str = "msgbatch_01", **kwargs: Any) -> dict[str, Any]:
    return batch_json(batch_id, "ended", **kwargs)


def reply(
    status: int = 200,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    stream: httpx.SyncByteStream | None = None,
) -> Answer:
    """An answer built afresh for each request (a response object cannot be sent twice)."""

    def answer(request: httpx.Request) -> httpx.Response:
        hdrs = {"request-id": "req_ok", **(headers or {})}
        if stream is not None:
            return httpx.Response(status, headers=hdrs, stream=stream)
        if content is not None:
            return httpx.Response(status, headers=hdrs, content=content)
        return httpx.Response(status, headers=hdrs, json=body)

    return answer


def error_reply(
    status: int,
    error_type: str = "api_error",
    message: str = "something went wrong",
    *,
    request_id: str | None = "req_err",
    headers: dict[str, str] | None = None,
) -> Answer:
    hdrs = dict(headers or {})
    if request_id:
        hdrs["request-id"] = request_id
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return lambda request: httpx.Response(status, headers=hdrs, json=body)


def raise_(exc_type: type[httpx.TransportError], message: str = "boom") -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return answer


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in exactly these chunks (httpx passes them through as is)."""

    def __init__(self, chunks: Iterable[bytes], *, fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.fail_after = fail_after

    def _each(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index >= self.fail_after:
                raise httpx.ReadError("connection dropped mid-body")
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        yield from self._each()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._each():
            yield chunk


class FakeAPI:
    """Answers requests from a script, in order, and records every request with its body.

    ``default`` answers whatever comes after the script; without it an extra request fails
    the test loudly.
    """

    def __init__(self, *answers: Answer, default: Answer | None = None) -> None:
        self.answers = list(answers)
        self.default = default
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)(request)
        if self.default is not None:
            return self.default(request)
        raise AssertionError(f"unexpected request: {request.method} {request.url}")

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


class SyncDriver:
    kind = "sync"

    def __init__(self, api: FakeAPI, **kwargs: Any) -> None:
        self.sleeps: list[float] = []
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", BASE_URL)
        self.client = Client(transport=api.transport, sleep=self.sleeps.append, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            return list(out) if isinstance(out, Iterator) else out

        return call

    def close(self) -> None:
        self.client.close()


class AsyncDriver:
    kind = "async"

    def __init__(self, api: FakeAPI, **kwargs: Any) -> None:
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", BASE_URL)
        self.client = AsyncClient(transport=api.transport, sleep=sleep, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                out = method(*args, **kwargs)
                if isinstance(out, AsyncIterator):
                    return [item async for item in out]
                return await out

            return asyncio.run(run())

        return call

    def close(self) -> None:
        asyncio.run(self.client.aclose())


Driver = SyncDriver | AsyncDriver

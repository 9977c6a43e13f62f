"""``AsyncClient``: the asynchronous shell over ``_BaseClient``, the same operations as
``Client``. It sends, reads and sleeps; nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Unpack

import httpx

from airflow_batches.api._answers import ModelT, Outcome
from airflow_batches.api._base import (
    AsyncBodySource,
    BatchRef,
    ListParams,
    RequestSpec,
    _BaseClient,
    next_page,
)
from airflow_batches.api._errors import APIConnectionError
from airflow_batches.api._lines import aiter_lines
from airflow_batches.api._listing import ListedPage, decode_listed_page
from airflow_batches.api._models import (
    BatchRequest,
    BatchResultLine,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
)
from airflow_batches.api._results import (
    AsyncResultsStream,
    ResultsDownload,
    body_start,
    parse_result_line,
)
from airflow_batches.api._settings import ClientOptions, make_settings


async def _as_async(chunks: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


class AsyncClient(_BaseClient):
    """Asynchronous client of the Message Batches API; the same operations as ``Client``."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(make_settings(**options))
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the send loop ----------------------------------------------------------------------

    @staticmethod
    def _content(body: AsyncBodySource | None) -> bytes | AsyncIterator[bytes] | None:
        if body is None or isinstance(body, bytes):
            return body
        return _as_async(body())

    async def _send(self, spec: RequestSpec[Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._build(spec, self._content(spec.body))
            outcome: Outcome
            try:
                outcome = await self._http.send(request, stream=spec.stream)
                if self._is_answer(spec, outcome):
                    return outcome
                # An error answer is small: read it whole (a failure here is a connection
                # error like any other, and retried as one).
                try:
                    await outcome.aread()
                finally:
                    await outcome.aclose()
            except httpx.TransportError as exc:
                outcome = exc
            await self._sleep(self._wait_or_raise(attempt, request, outcome, spec.max_retries))
            attempt += 1

    async def _call(self, spec: RequestSpec[ModelT]) -> ModelT:
        return self._answer(spec, await self._send(spec))

    # -- the six operations ----------------------------------------------------------------

    async def create(
        self,
        requests: Iterable[BatchRequest | Mapping[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        body = self._create_body(requests)
        return await self.create_from_body(
            body, extra_headers=extra_headers, max_retries=max_retries
        )

    async def create_from_body(
        self,
        body: AsyncBodySource,
        *,
        content_length: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        """As ``Client.create_from_body``; the callable may also give an async iterable."""
        spec = self._create_spec(
            body,
            content_length=content_length,
            extra_headers=extra_headers,
            max_retries=max_retries,
        )
        return await self._call(spec)

    async def count_tokens(self, params: Mapping[str, Any]) -> int:
        """Input tokens the API counts for one Messages request's ``params`` (free)."""
        return (await self._call(self._count_tokens_spec(params))).input_tokens

    async def retrieve(self, batch_id: str) -> MessageBatch:
        return await self._call(self._retrieve_spec(batch_id))

    async def list_page(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> MessageBatchPage:
        return await self._call(self._list_spec(ListParams(limit, before_id, after_id)))

    async def list_page_listed(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> ListedPage:
        """``list_page`` read leanly: each batch parsed only when asked (``_listing``)."""
        spec = self._list_spec(ListParams(limit, before_id, after_id))
        return decode_listed_page(await self._send(spec))

    async def list(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> AsyncIterator[MessageBatch]:
        params: ListParams | None = ListParams(limit, before_id, after_id)
        while params is not None:
            page = await self._call(self._list_spec(params))
            for batch in page.data:
                yield batch
            params = next_page(page, params)

    async def cancel(self, batch_id: str) -> MessageBatch:
        return await self._call(self._cancel_spec(batch_id))

    async def delete(self, batch_id: str) -> DeletedMessageBatch:
        return await self._call(self._delete_spec(batch_id))

    # -- results ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def stream_results(
        self, batch: BatchRef, *, offset: int = 0, if_range: str | None = None
    ) -> AsyncIterator[AsyncResultsStream]:
        resolved = batch if isinstance(batch, MessageBatch) else await self.retrieve(batch)
        response = await self._send(self._results_spec(resolved, offset, if_range))
        start = body_start(response, offset)
        if start is None:
            await response.aclose()
            response, start = await self._send(self._results_spec(resolved)), 0
        try:
            yield AsyncResultsStream(
                resolved, response, offset=start, max_line_bytes=self.settings.max_line_bytes
            )
        finally:
            await response.aclose()

    async def iter_result_bytes(self, batch: BatchRef, *, resumes: int = 0) -> AsyncIterator[bytes]:
        resolved = batch if isinstance(batch, MessageBatch) else await self.retrieve(batch)
        download = ResultsDownload(
            resolved,
            resumes=resumes,
            policy=self.settings.retry,
            max_line_bytes=self.settings.max_line_bytes,
        )
        while True:
            offset, if_range = download.reopen()
            async with self.stream_results(resolved, offset=offset, if_range=if_range) as stream:
                try:
                    download.begin(stream)
                    async for chunk in stream.aiter_bytes():
                        if out := download.feed(chunk):
                            yield out
                    if out := download.finish():
                        yield out
                    return
                except APIConnectionError as exc:
                    wait = download.cut(exc)
            await self._sleep(wait)

    def iter_result_lines(self, batch: BatchRef, *, resumes: int = 0) -> AsyncIterator[bytes]:
        return aiter_lines(self.iter_result_bytes(batch, resumes=resumes))

    async def results(self, batch: BatchRef, *, resumes: int = 0) -> AsyncIterator[BatchResultLine]:
        batch_id = batch if isinstance(batch, str) else batch.id
        number = 0
        async for line in self.iter_result_lines(batch, resumes=resumes):
            number += 1
            yield parse_result_line(batch_id, number, line)

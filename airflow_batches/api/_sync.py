"""``Client``: the synchronous shell over ``_BaseClient``. It sends, reads and sleeps; nothing
else. Resumable results downloads are described in ``_results``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from typing import Any, Unpack

import httpx

from airflow_batches.api._answers import ModelT, Outcome
from airflow_batches.api._base import (
    AsyncBodySource,
    BatchRef,
    BodySource,
    ListParams,
    RequestSpec,
    _BaseClient,
    next_page,
)
from airflow_batches.api._errors import APIConnectionError
from airflow_batches.api._lines import iter_lines
from airflow_batches.api._models import (
    BatchRequest,
    BatchResultLine,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
)
from airflow_batches.api._results import (
    ResultsDownload,
    ResultsStream,
    body_start,
    parse_result_line,
)
from airflow_batches.api._settings import ClientOptions, make_settings


class Client(_BaseClient):
    """Synchronous client of the Message Batches API.

    >>> with Client(api_key="...") as client:            # doctest: +SKIP
    ...     batch = client.create([{"custom_id": "a", "params": {...}}])
    """

    _http: httpx.Client

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(make_settings(**options))
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._http_options())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the send loop ----------------------------------------------------------------------

    @staticmethod
    def _content(body: AsyncBodySource | None) -> bytes | Iterable[bytes] | None:
        if body is None or isinstance(body, bytes):
            return body
        chunks = body()
        if isinstance(chunks, AsyncIterable):
            raise TypeError("an asynchronous body needs AsyncClient")
        return chunks

    def _send(self, spec: RequestSpec[Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._build(spec, self._content(spec.body))
            outcome: Outcome
            try:
                outcome = self._http.send(request, stream=spec.stream)
                if self._is_answer(spec, outcome):
                    return outcome
                # An error answer is small: read it whole (a failure here is a connection
                # error like any other, and retried as one).
                try:
                    outcome.read()
                finally:
                    outcome.close()
            except httpx.TransportError as exc:
                outcome = exc
            self._sleep(self._wait_or_raise(attempt, request, outcome, spec.max_retries))
            attempt += 1

    def _call(self, spec: RequestSpec[ModelT]) -> ModelT:
        return self._answer(spec, self._send(spec))

    # -- the six operations ----------------------------------------------------------------

    def create(
        self,
        requests: Iterable[BatchRequest | Mapping[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        """Create a batch from request objects (validated here, before anything is sent)."""
        body = self._create_body(requests)
        return self.create_from_body(body, extra_headers=extra_headers, max_retries=max_retries)

    def create_from_body(
        self,
        body: BodySource,
        *,
        content_length: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        """Create a batch from an encoded ``{"requests":[...]}`` body.

        ``body`` is bytes, or a callable returning a fresh iterable of byte chunks for each
        attempt: a 256 MB body then never sits in memory. With ``content_length`` the body is
        sent with that length instead of chunked. A create that failed without a clear answer
        may still have created the batch; pass ``max_retries=0`` and reconcile yourself when a
        duplicate would be costly.
        """
        spec = self._create_spec(
            body,
            content_length=content_length,
            extra_headers=extra_headers,
            max_retries=max_retries,
        )
        return self._call(spec)

    def count_tokens(self, params: Mapping[str, Any]) -> int:
        """Input tokens the API counts for one Messages request's ``params`` (free)."""
        return (self._call(self._count_tokens_spec(params))).input_tokens

    def retrieve(self, batch_id: str) -> MessageBatch:
        return self._call(self._retrieve_spec(batch_id))

    def list_page(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> MessageBatchPage:
        return self._call(self._list_spec(ListParams(limit, before_id, after_id)))

    def list(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> Iterator[MessageBatch]:
        """Every batch of the workspace, newest first, fetching pages as needed."""
        params: ListParams | None = ListParams(limit, before_id, after_id)
        while params is not None:
            page = self._call(self._list_spec(params))
            yield from page.data
            params = next_page(page, params)

    def cancel(self, batch_id: str) -> MessageBatch:
        return self._call(self._cancel_spec(batch_id))

    def delete(self, batch_id: str) -> DeletedMessageBatch:
        return self._call(self._delete_spec(batch_id))

    # -- results ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def stream_results(
        self, batch: BatchRef, *, offset: int = 0, if_range: str | None = None
    ) -> Iterator[ResultsStream]:
        """Open the results of an ended batch, following its ``results_url`` as given.

        With ``offset`` the server is asked for the bytes from there on; ``stream.offset`` says
        where the answer really starts (``offset``, or 0 when the server sent everything).
        """
        resolved = batch if isinstance(batch, MessageBatch) else self.retrieve(batch)
        response = self._send(self._results_spec(resolved, offset, if_range))
        start = body_start(response, offset)
        if start is None:
            response.close()
            response, start = self._send(self._results_spec(resolved)), 0
        try:
            yield ResultsStream(
                resolved, response, offset=start, max_line_bytes=self.settings.max_line_bytes
            )
        finally:
            response.close()

    def iter_result_bytes(self, batch: BatchRef, *, resumes: int = 0) -> Iterator[bytes]:
        """The results body, whole lines at a time, surviving up to ``resumes`` cuts in a row."""
        resolved = batch if isinstance(batch, MessageBatch) else self.retrieve(batch)
        download = ResultsDownload(
            resolved,
            resumes=resumes,
            policy=self.settings.retry,
            max_line_bytes=self.settings.max_line_bytes,
        )
        while True:
            offset, if_range = download.reopen()
            with self.stream_results(resolved, offset=offset, if_range=if_range) as stream:
                try:
                    download.begin(stream)
                    for chunk in stream.iter_bytes():
                        if out := download.feed(chunk):
                            yield out
                    if out := download.finish():
                        yield out
                    return
                except APIConnectionError as exc:
                    wait = download.cut(exc)
            self._sleep(wait)

    def iter_result_lines(self, batch: BatchRef, *, resumes: int = 0) -> Iterator[bytes]:
        """Raw JSONL lines of a batch's results (bytes, without newline)."""
        return iter_lines(self.iter_result_bytes(batch, resumes=resumes))

    def results(self, batch: BatchRef, *, resumes: int = 0) -> Iterator[BatchResultLine]:
        """Parsed result lines of a batch, in the order the API sends them."""
        batch_id = batch if isinstance(batch, str) else batch.id
        lines = self.iter_result_lines(batch, resumes=resumes)
        for number, line in enumerate(lines, start=1):
            yield parse_result_line(batch_id, number, line)

"""The Message Batches client: one I/O-free core, two thin shells.

``_BaseClient`` builds every request, parses every response and makes every retry decision;
``Client`` and ``AsyncClient`` only send and sleep. Anything that behaves differently between
the two shells is a bug in the shells.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import platform
import ssl
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pydantic

from airflow_batches._version import __version__
from airflow_batches.api._envelope import encode_request_line, iter_create_body
from airflow_batches.api._errors import (
    APIStatusError,
    ResponseValidationError,
    ResultsExpiredError,
    ResultsNotReadyError,
    connection_error_from,
    status_error_class,
)
from airflow_batches.api._lines import aiter_lines, iter_lines
from airflow_batches.api._models import (
    RESULT_LINE_ADAPTER,
    BatchRequest,
    BatchResultLine,
    DeletedMessageBatch,
    ErrorBody,
    MessageBatch,
    MessageBatchPage,
)
from airflow_batches.api._retry import RetryPolicy, retry_after_seconds, retry_delay, should_retry

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
BATCHES_PATH = "/v1/messages/batches"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
BodySource = bytes | Callable[[], Iterable[bytes]]
AsyncBodySource = bytes | Callable[[], Iterable[bytes] | AsyncIterable[bytes]]
BatchRef = str | MessageBatch


class Secret:
    """A string that never shows itself: ``repr``, ``str`` and formatting print stars."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an API key is not picklable: pass the connection id instead")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process.

    Building one loads the CA bundle (tens of milliseconds): done once, not per client, so a
    triggerer starting many triggers never blocks its event loop on it.
    """
    return httpx.create_ssl_context(verify=True)


def _user_agent() -> str:
    return (
        f"airflow-batches/{__version__} httpx/{httpx.__version__} "
        f"python/{platform.python_version()}"
    )


@dataclass(frozen=True, repr=False)
class ClientSettings:
    """Everything a client needs besides its transport. Safe to print: the key is a Secret."""

    api_key: Secret
    base_url: str = DEFAULT_BASE_URL
    anthropic_version: str = DEFAULT_API_VERSION
    betas: tuple[str, ...] = ()
    workspace_id: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = ""

    def __repr__(self) -> str:
        return (
            f"ClientSettings(base_url={self.base_url!r}, "
            f"anthropic_version={self.anthropic_version!r}, betas={self.betas!r}, "
            f"workspace_id={self.workspace_id!r}, api_key=**********)"
        )


def make_settings(
    *,
    api_key: str | Secret,
    base_url: str | None = None,
    anthropic_version: str | None = None,
    betas: Sequence[str] | None = None,
    workspace_id: str | None = None,
    timeout: float | httpx.Timeout | None = None,
    max_retries: int | None = None,
    retry: RetryPolicy | None = None,
) -> ClientSettings:
    key = api_key if isinstance(api_key, Secret) else Secret(api_key)
    if not key:
        raise ValueError("an API key is required")
    base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        # Fail here, not as a "connection error" retried with backoff on the first call.
        raise ValueError(f"base_url must start with https:// or http://, got {base_url!r}")
    if isinstance(timeout, int | float):
        timeout = httpx.Timeout(float(timeout), connect=min(5.0, float(timeout)))
    policy = retry or RetryPolicy()
    if max_retries is not None:
        policy = RetryPolicy(
            max_retries=max_retries,
            initial_delay=policy.initial_delay,
            max_delay=policy.max_delay,
            jitter=policy.jitter,
            max_retry_after=policy.max_retry_after,
        )
    return ClientSettings(
        api_key=key,
        base_url=base_url,
        anthropic_version=anthropic_version or DEFAULT_API_VERSION,
        betas=tuple(b.strip() for b in betas or () if b.strip()),
        workspace_id=workspace_id or None,
        timeout=timeout or DEFAULT_TIMEOUT,
        retry=policy,
        user_agent=_user_agent(),
    )


@dataclass(frozen=True)
class ListParams:
    limit: int = 20
    before_id: str | None = None
    after_id: str | None = None

    def query(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"limit": self.limit}
        if self.before_id:
            out["before_id"] = self.before_id
        if self.after_id:
            out["after_id"] = self.after_id
        return out


def next_page(page: MessageBatchPage, params: ListParams) -> ListParams | None:
    """Parameters of the page after ``page``, or None when it was the last one.

    Paging backwards (started with ``before_id``) continues from ``first_id``; otherwise from
    ``last_id``.
    """
    if not page.has_more or not page.data:
        return None
    if params.before_id:
        return ListParams(limit=params.limit, before_id=page.first_id or page.data[0].id)
    return ListParams(limit=params.limit, after_id=page.last_id or page.data[-1].id)


class _BaseClient:
    """Request building, response parsing and retry decisions. No I/O."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    # -- requests --------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        s = self.settings
        headers = {
            "x-api-key": s.api_key.get_secret_value(),
            "anthropic-version": s.anthropic_version,
            "accept": "application/json",
            "user-agent": s.user_agent,
        }
        if s.betas:
            headers["anthropic-beta"] = ",".join(s.betas)
        if s.workspace_id:
            headers["anthropic-workspace-id"] = s.workspace_id
        if extra:
            headers.update(extra)
        return headers

    def _url(self, path: str) -> str:
        return self.settings.base_url + path

    def _batch_url(self, batch_id: str, suffix: str = "") -> str:
        if not batch_id or "/" in batch_id:
            raise ValueError(f"invalid batch id: {batch_id!r}")
        return self._url(f"{BATCHES_PATH}/{batch_id}{suffix}")

    def _results_url(self, batch: MessageBatch) -> str:
        if batch.archived_at is not None:
            raise ResultsExpiredError(
                f"the results of batch {batch.id} are gone: they were archived at "
                f"{batch.archived_at.isoformat()} (results are kept 29 days from "
                f"{batch.created_at.isoformat()})",
                batch_id=batch.id,
            )
        if not batch.is_ended or not batch.results_url:
            raise ResultsNotReadyError(
                f"batch {batch.id} has not ended (processing_status="
                f"{batch.processing_status}); results exist only once it has",
                batch_id=batch.id,
            )
        if "://" not in batch.results_url:
            # The API sends an absolute URL, used exactly as given; a relative one (a proxy or
            # an older emulator) can only mean the server that answered.
            return self._url("/" + batch.results_url.lstrip("/"))
        return batch.results_url

    # -- responses -------------------------------------------------------------------------

    @staticmethod
    def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise ResponseValidationError(
                f"{response.request.method} {response.request.url} answered "
                f"{response.status_code} with a body that is not a {model.__name__}: "
                f"{exc.errors(include_url=False, include_input=False)}",
                request_id=response.headers.get("request-id"),
            ) from None

    @staticmethod
    def _status_error(response: httpx.Response) -> APIStatusError:
        """Build the exception for an error answer whose body has been read."""
        error_type: str | None = None
        message = ""
        request_id = response.headers.get("request-id")
        try:
            body = ErrorBody.model_validate_json(response.content)
        except pydantic.ValidationError:
            text = response.content[:500].decode("utf-8", "replace").strip()
            message = text or response.reason_phrase or "error"
        else:
            error_type = body.error.type
            message = body.error.message
            request_id = request_id or body.request_id
        cls = status_error_class(response.status_code)
        return cls(
            message,
            status_code=response.status_code,
            error_type=error_type,
            request_id=request_id,
            retry_after=retry_after_seconds(response.headers),
            context=f"{response.request.method} {response.request.url.path}",
        )

    def _retry_wait(
        self,
        attempt: int,
        status: int | None,
        headers: Mapping[str, str] | None,
        max_retries: int | None,
    ) -> float | None:
        """Seconds to wait before another attempt, or None to give up now."""
        limit = self.settings.retry.max_retries if max_retries is None else max_retries
        if attempt >= limit or not should_retry(status, headers):
            return None
        return retry_delay(attempt, headers, self.settings.retry)

    @staticmethod
    def _log_retry(
        request: httpx.Request, what: str, wait: float, attempt: int, request_id: str | None
    ) -> None:
        log.warning(
            "%s %s failed (%s%s); retry %d in %.2fs",
            request.method,
            request.url.path,
            what,
            f", request-id {request_id}" if request_id else "",
            attempt + 1,
            wait,
        )


def _parse_result_line(batch: MessageBatch, number: int, line: bytes) -> BatchResultLine:
    try:
        return RESULT_LINE_ADAPTER.validate_json(line)
    except pydantic.ValidationError as exc:
        # Neither the line nor its input goes into the message: it may be megabytes long.
        raise ResponseValidationError(
            f"results of batch {batch.id}, line {number}: not a result line: "
            f"{exc.errors(include_url=False, include_input=False)}"
        ) from None


class ResultsStream:
    """An open results download (sync). Iterate once, with one of the three views."""

    def __init__(self, batch: MessageBatch, response: httpx.Response) -> None:
        self.batch = batch
        self.response = response

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        try:
            yield from self.response.iter_bytes(chunk_size)
        except httpx.TransportError as exc:
            raise connection_error_from(exc, self.response.request) from exc

    def iter_lines(self) -> Iterator[bytes]:
        return iter_lines(self.iter_bytes())

    def iter_results(self) -> Iterator[BatchResultLine]:
        for number, line in enumerate(self.iter_lines(), start=1):
            yield _parse_result_line(self.batch, number, line)


class AsyncResultsStream:
    """An open results download (async)."""

    def __init__(self, batch: MessageBatch, response: httpx.Response) -> None:
        self.batch = batch
        self.response = response

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes(chunk_size):
                yield chunk
        except httpx.TransportError as exc:
            raise connection_error_from(exc, self.response.request) from exc

    def aiter_lines(self) -> AsyncIterator[bytes]:
        return aiter_lines(self.aiter_bytes())

    async def aiter_results(self) -> AsyncIterator[BatchResultLine]:
        number = 0
        async for line in self.aiter_lines():
            number += 1
            yield _parse_result_line(self.batch, number, line)


class Client(_BaseClient):
    """Synchronous client of the Message Batches API.

    >>> with Client(api_key="...") as client:            # doctest: +SKIP
    ...     batch = client.create([{"custom_id": "a", "params": {...}}])
    """

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        anthropic_version: str | None = None,
        betas: Sequence[str] | None = None,
        workspace_id: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            make_settings(
                api_key=api_key,
                base_url=base_url,
                anthropic_version=anthropic_version,
                betas=betas,
                workspace_id=workspace_id,
                timeout=timeout,
                max_retries=max_retries,
                retry=retry,
            )
        )
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport,
            timeout=self.settings.timeout,
            verify=tls_context(),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        build: Callable[[], httpx.Request],
        *,
        stream: bool = False,
        max_retries: int | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = build()
            try:
                response = self._http.send(request, stream=stream)
                if not response.is_success:
                    # An error answer is small: read it whole (a failure here is a
                    # connection error like any other, and retried as one).
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                conn_error = connection_error_from(exc, request)
                wait = self._retry_wait(attempt, None, None, max_retries)
                if wait is None:
                    raise conn_error from exc
                self._log_retry(request, conn_error.message, wait, attempt, None)
            else:
                if response.is_success:
                    return response
                error = self._status_error(response)
                wait = self._retry_wait(
                    attempt, response.status_code, response.headers, max_retries
                )
                if wait is None:
                    raise error
                self._log_retry(request, str(response.status_code), wait, attempt, error.request_id)
            self._sleep(wait)
            attempt += 1

    def _request(
        self,
        method: str,
        url: str,
        model: type[ModelT],
        *,
        params: Mapping[str, str | int] | None = None,
    ) -> ModelT:
        def build() -> httpx.Request:
            return self._http.build_request(method, url, params=params, headers=self._headers())

        return self._parse(model, self._send(build))

    # -- the six operations ----------------------------------------------------------------

    def create(
        self,
        requests: Iterable[BatchRequest | Mapping[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        """Create a batch from request objects (validated here, before anything is sent)."""
        body = b"".join(iter_create_body(encode_request_line(r) for r in requests))
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
        headers = {"content-type": "application/json", **(extra_headers or {})}
        if content_length is not None:
            headers["content-length"] = str(content_length)
        url = self._url(BATCHES_PATH)

        def build() -> httpx.Request:
            content = body if isinstance(body, bytes) else body()
            return self._http.build_request(
                "POST", url, content=content, headers=self._headers(headers)
            )

        return self._parse(MessageBatch, self._send(build, max_retries=max_retries))

    def retrieve(self, batch_id: str) -> MessageBatch:
        return self._request("GET", self._batch_url(batch_id), MessageBatch)

    def list_page(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> MessageBatchPage:
        query = ListParams(limit, before_id, after_id).query()
        return self._request("GET", self._url(BATCHES_PATH), MessageBatchPage, params=query)

    def list(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> Iterator[MessageBatch]:
        """Every batch of the workspace, newest first, fetching pages as needed."""
        params: ListParams | None = ListParams(limit, before_id, after_id)
        while params is not None:
            page = self._request(
                "GET", self._url(BATCHES_PATH), MessageBatchPage, params=params.query()
            )
            yield from page.data
            params = next_page(page, params)

    def cancel(self, batch_id: str) -> MessageBatch:
        return self._request("POST", self._batch_url(batch_id, "/cancel"), MessageBatch)

    def delete(self, batch_id: str) -> DeletedMessageBatch:
        return self._request("DELETE", self._batch_url(batch_id), DeletedMessageBatch)

    @contextlib.contextmanager
    def stream_results(self, batch: BatchRef) -> Iterator[ResultsStream]:
        """Open the results of an ended batch, following its ``results_url`` as given."""
        resolved = batch if isinstance(batch, MessageBatch) else self.retrieve(batch)
        url = self._results_url(resolved)

        def build() -> httpx.Request:
            return self._http.build_request(
                "GET", url, headers=self._headers({"accept": "application/binary"})
            )

        response = self._send(build, stream=True)
        try:
            yield ResultsStream(resolved, response)
        finally:
            response.close()

    def iter_result_lines(self, batch: BatchRef) -> Iterator[bytes]:
        """Raw JSONL lines of a batch's results (bytes, without newline)."""
        with self.stream_results(batch) as stream:
            yield from stream.iter_lines()

    def results(self, batch: BatchRef) -> Iterator[BatchResultLine]:
        """Parsed result lines of a batch, in the order the API sends them."""
        with self.stream_results(batch) as stream:
            yield from stream.iter_results()


async def _as_async(chunks: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


class AsyncClient(_BaseClient):
    """Asynchronous client of the Message Batches API; the same operations as ``Client``."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        anthropic_version: str | None = None,
        betas: Sequence[str] | None = None,
        workspace_id: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            make_settings(
                api_key=api_key,
                base_url=base_url,
                anthropic_version=anthropic_version,
                betas=betas,
                workspace_id=workspace_id,
                timeout=timeout,
                max_retries=max_retries,
                retry=retry,
            )
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self.settings.timeout,
            verify=tls_context(),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self,
        build: Callable[[], httpx.Request],
        *,
        stream: bool = False,
        max_retries: int | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = build()
            try:
                response = await self._http.send(request, stream=stream)
                if not response.is_success:
                    # An error answer is small: read it whole (a failure here is a
                    # connection error like any other, and retried as one).
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                conn_error = connection_error_from(exc, request)
                wait = self._retry_wait(attempt, None, None, max_retries)
                if wait is None:
                    raise conn_error from exc
                self._log_retry(request, conn_error.message, wait, attempt, None)
            else:
                if response.is_success:
                    return response
                error = self._status_error(response)
                wait = self._retry_wait(
                    attempt, response.status_code, response.headers, max_retries
                )
                if wait is None:
                    raise error
                self._log_retry(request, str(response.status_code), wait, attempt, error.request_id)
            await self._sleep(wait)
            attempt += 1

    async def _request(
        self,
        method: str,
        url: str,
        model: type[ModelT],
        *,
        params: Mapping[str, str | int] | None = None,
    ) -> ModelT:
        def build() -> httpx.Request:
            return self._http.build_request(method, url, params=params, headers=self._headers())

        return self._parse(model, await self._send(build))

    async def create(
        self,
        requests: Iterable[BatchRequest | Mapping[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> MessageBatch:
        body = b"".join(iter_create_body(encode_request_line(r) for r in requests))
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
        headers = {"content-type": "application/json", **(extra_headers or {})}
        if content_length is not None:
            headers["content-length"] = str(content_length)
        url = self._url(BATCHES_PATH)

        def build() -> httpx.Request:
            content: bytes | AsyncIterator[bytes] = (
                body if isinstance(body, bytes) else _as_async(body())
            )
            return self._http.build_request(
                "POST", url, content=content, headers=self._headers(headers)
            )

        return self._parse(MessageBatch, await self._send(build, max_retries=max_retries))

    async def retrieve(self, batch_id: str) -> MessageBatch:
        return await self._request("GET", self._batch_url(batch_id), MessageBatch)

    async def list_page(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> MessageBatchPage:
        query = ListParams(limit, before_id, after_id).query()
        return await self._request("GET", self._url(BATCHES_PATH), MessageBatchPage, params=query)

    async def list(
        self, *, limit: int = 20, before_id: str | None = None, after_id: str | None = None
    ) -> AsyncIterator[MessageBatch]:
        params: ListParams | None = ListParams(limit, before_id, after_id)
        while params is not None:
            page = await self._request(
                "GET", self._url(BATCHES_PATH), MessageBatchPage, params=params.query()
            )
            for batch in page.data:
                yield batch
            params = next_page(page, params)

    async def cancel(self, batch_id: str) -> MessageBatch:
        return await self._request("POST", self._batch_url(batch_id, "/cancel"), MessageBatch)

    async def delete(self, batch_id: str) -> DeletedMessageBatch:
        return await self._request("DELETE", self._batch_url(batch_id), DeletedMessageBatch)

    @contextlib.asynccontextmanager
    async def stream_results(self, batch: BatchRef) -> AsyncIterator[AsyncResultsStream]:
        resolved = batch if isinstance(batch, MessageBatch) else await self.retrieve(batch)
        url = self._results_url(resolved)

        def build() -> httpx.Request:
            return self._http.build_request(
                "GET", url, headers=self._headers({"accept": "application/binary"})
            )

        response = await self._send(build, stream=True)
        try:
            yield AsyncResultsStream(resolved, response)
        finally:
            await response.aclose()

    async def iter_result_lines(self, batch: BatchRef) -> AsyncIterator[bytes]:
        async with self.stream_results(batch) as stream:
            async for line in stream.aiter_lines():
                yield line

    async def results(self, batch: BatchRef) -> AsyncIterator[BatchResultLine]:
        async with self.stream_results(batch) as stream:
            async for item in stream.aiter_results():
                yield item

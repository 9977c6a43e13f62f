"""The I/O-free core of both clients: request specs, and (through ``_answers``) answer parsing
and the retry-or-raise decision.

Every call is first written down as a ``RequestSpec`` (method, URL, params, headers, body
source, expected model, stream or not). ``Client`` and ``AsyncClient`` only turn a spec into
an ``httpx.Request``, send it, and ask ``retry_or_raise`` what to do with a failed attempt:
wait that many seconds and send again, or raise that exception. Anything that behaves
differently between the two shells is a bug in the shells.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

import httpx
import pydantic

from airflow_batches.api._answers import (
    ModelT,
    Outcome,
    parse_answer,
    retry_or_raise,
    status_error,
)
from airflow_batches.api._clock import ServerClock
from airflow_batches.api._envelope import encode_request_line, iter_create_body
from airflow_batches.api._errors import (
    ResultsExpiredError,
    ResultsNotReadyError,
    UntrustedURLError,
    connection_error_from,
)
from airflow_batches.api._models import (
    BatchRequest,
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
    check_id,
)
from airflow_batches.api._settings import ClientSettings, tls_context, url_origin

# The name the retry warnings have always been logged under (logging configs refer to it);
# kept when the client was split into several modules.
log = logging.getLogger("airflow_batches.api")  # the public name, for logging config


BATCHES_PATH = "/v1/messages/batches"
RESULTS_ENCODINGS = "gzip, deflate"
"""The content-encodings a results download accepts: those it inflates itself, a bounded step
at a time (``_bounds.BoundedDecoder``)."""

BodySource = bytes | Callable[[], Iterable[bytes]]
"""A body as bytes, or a callable giving a fresh iterable of chunks for each attempt."""
AsyncBodySource = bytes | Callable[[], Iterable[bytes] | AsyncIterable[bytes]]
BatchRef = str | MessageBatch


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


class TokenCount(pydantic.BaseModel):
    """The token-counting endpoint's answer (free, rate-limited; other fields tolerated)."""

    model_config = pydantic.ConfigDict(extra="allow")

    input_tokens: int


@dataclass(frozen=True)
class RequestSpec(Generic[ModelT]):
    """One API call as data: what to send, and what a successful answer must be."""

    method: str
    url: str
    model: type[ModelT] | None = None
    """The model a 2xx body is parsed into; None for a stream handed back open."""
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] | None = None
    """Sent on top of the client's own headers (key, version, betas, workspace)."""
    body: AsyncBodySource | None = None
    stream: bool = False
    max_retries: int | None = None
    """Overrides the policy's ``max_retries`` for this call (0: a single attempt)."""
    passthrough: frozenset[int] = frozenset()
    """Error statuses handed back as answers instead of raised (a 416 to a range request)."""


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


def _shown_origin(parsed: httpx.URL | None, url: str) -> str:
    """The origin part of a URL that is not an http(s) origin, for an error message."""
    if parsed is None:
        return f"{url[:60]!r} (not a URL)"
    return repr(f"{parsed.scheme}://{parsed.host}" if parsed.scheme else f"//{parsed.host}")


class _BaseClient:
    """Request specs, request building, answer parsing and retry decisions. No I/O."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.server_clock = ServerClock()
        """The server's time, from the ``Date`` of its answers (see ``_clock``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    def _http_options(self) -> dict[str, Any]:
        """Keyword arguments of the httpx client, the same for both shells."""
        return {
            "timeout": self.settings.timeout,
            "verify": tls_context(),
            "follow_redirects": False,
        }

    # -- building ---------------------------------------------------------------------------

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
        return self._url(f"{BATCHES_PATH}/{check_id(batch_id)}{suffix}")

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
        url = batch.results_url
        try:
            parsed: httpx.URL | None = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is not None and not parsed.scheme and not parsed.host:
            # The API sends an absolute URL; a relative one (a proxy or an older emulator) can
            # only mean the server that answered.
            return self._url("/" + url.lstrip("/"))
        origin = url_origin(parsed) if parsed is not None else None
        if origin is None or origin not in self.settings.trusted_origins:
            # The key goes with every request: never to a server the user did not name.
            where = origin or _shown_origin(parsed, url)
            raise UntrustedURLError(
                f"batch {batch.id}: its results_url is on {where}, not on the API's origin "
                f"{self.settings.origin}; the request (which carries the API key) was not "
                "sent. If a gateway serves results there, add its origin to results_origins "
                "(a client option, or the connection's extra)",
                batch_id=batch.id,
            )
        return url

    def _build(
        self, spec: RequestSpec[Any], content: bytes | Iterable[bytes] | AsyncIterable[bytes] | None
    ) -> httpx.Request:
        # build_request (not httpx.Request) so the client's timeout reaches the transport.
        return self._http.build_request(
            spec.method,
            spec.url,
            params=spec.params,
            headers=self._headers(spec.headers),
            content=content,
        )

    # -- the specs --------------------------------------------------------------------------

    @staticmethod
    def _create_body(requests: Iterable[BatchRequest | Mapping[str, Any]]) -> bytes:
        """The create body of request objects, each validated before anything is sent."""
        return b"".join(iter_create_body(encode_request_line(r) for r in requests))

    def _create_spec(
        self,
        body: AsyncBodySource,
        *,
        content_length: int | None,
        extra_headers: Mapping[str, str] | None,
        max_retries: int | None,
    ) -> RequestSpec[MessageBatch]:
        headers = {"content-type": "application/json", **(extra_headers or {})}
        if content_length is not None:
            headers["content-length"] = str(content_length)
        return RequestSpec(
            "POST",
            self._url(BATCHES_PATH),
            MessageBatch,
            headers=headers,
            body=body,
            max_retries=max_retries,
        )

    def _retrieve_spec(self, batch_id: str) -> RequestSpec[MessageBatch]:
        return RequestSpec("GET", self._batch_url(batch_id), MessageBatch)

    def _list_spec(self, params: ListParams) -> RequestSpec[MessageBatchPage]:
        return RequestSpec("GET", self._url(BATCHES_PATH), MessageBatchPage, params=params.query())

    def _count_tokens_spec(self, params: Mapping[str, Any]) -> RequestSpec[TokenCount]:
        body = json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        return RequestSpec(
            "POST", self._url(COUNT_TOKENS_PATH), TokenCount, headers=headers, body=body
        )

    def _cancel_spec(self, batch_id: str) -> RequestSpec[MessageBatch]:
        return RequestSpec("POST", self._batch_url(batch_id, "/cancel"), MessageBatch)

    def _delete_spec(self, batch_id: str) -> RequestSpec[DeletedMessageBatch]:
        return RequestSpec("DELETE", self._batch_url(batch_id), DeletedMessageBatch)

    def _results_spec(
        self, batch: MessageBatch, offset: int = 0, if_range: str | None = None
    ) -> RequestSpec[Any]:
        """The results download, from byte ``offset`` on (a ``Range`` request) when above 0."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        headers = {"accept": "application/binary", "accept-encoding": RESULTS_ENCODINGS}
        if not offset:
            return RequestSpec("GET", self._results_url(batch), headers=headers, stream=True)
        headers["range"] = f"bytes={offset}-"
        if if_range:
            headers["if-range"] = if_range
        return RequestSpec(
            "GET",
            self._results_url(batch),
            headers=headers,
            stream=True,
            passthrough=frozenset({416}),
        )

    # -- answers ----------------------------------------------------------------------------

    def _is_answer(self, spec: RequestSpec[Any], response: httpx.Response) -> bool:
        self.server_clock.observe(response.headers.get("date"))
        return response.is_success or response.status_code in spec.passthrough

    _parse = staticmethod(parse_answer)  # per client, so that one client's parsing can be watched

    def _answer(self, spec: RequestSpec[ModelT], response: httpx.Response) -> ModelT:
        if spec.model is None:
            raise TypeError(f"{spec.method} {spec.url} expects no model: open it as a stream")
        return self._parse(spec.model, response)

    def _wait_or_raise(
        self, attempt: int, request: httpx.Request, outcome: Outcome, max_retries: int | None
    ) -> float:
        """``retry_or_raise``, with the retry logged and the exception raised."""
        verdict = retry_or_raise(
            attempt, outcome, request=request, policy=self.settings.retry, max_retries=max_retries
        )
        if isinstance(verdict, BaseException):
            if isinstance(outcome, BaseException):
                raise verdict from outcome
            raise verdict
        if isinstance(outcome, httpx.TransportError):
            what, request_id = connection_error_from(outcome, request).message, None
        else:
            what, request_id = str(outcome.status_code), status_error(outcome).request_id
        log.warning(
            "%s %s failed (%s%s); retry %d in %.2fs",
            request.method,
            request.url.path,
            what,
            f", request-id {request_id}" if request_id else "",
            attempt + 1,
            verdict,
        )
        return verdict

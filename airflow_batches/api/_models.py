"""Wire models of the Message Batches API.

Response models accept unknown fields: the API grows, and a new field must never break a
nightly run. Request models refuse what no request can be sent with (the envelope, ``model``,
``max_tokens``, streaming, SDK options: the shape in ``_request_shape``) and pass every other
Messages parameter through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from airflow_batches.api._request_shape import (
    CLIENT_CHECKS,
    Fault,
    params_faults,
    request_faults,
)

MAX_ID_LENGTH = 128
"""The longest identifier (batch, message or request id) accepted from the server."""
ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}$"
"""The shape of every identifier the server hands us: ASCII letters, digits, ``_`` and ``-``,
1 to ``MAX_ID_LENGTH`` characters. The API's ids (``msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d``,
``msg_…``, ``req_…``) are a prefix and a base-62 or hex part; their format "may change", so the
check is a safe charset and a generous length rather than the current prefixes. An id of this
shape is safe as a file name, a URL path segment and a log word."""
_ID = re.compile(ID_PATTERN[1:-1])
_SHOWN_ID_CHARS = 80


def check_id(value: str, what: str = "batch id") -> str:
    """``value`` when it has the shape of ``ID_PATTERN``; else ValueError naming it."""
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    shown = repr(value[:_SHOWN_ID_CHARS]) if isinstance(value, str) else repr(value)
    if isinstance(value, str) and len(value) > _SHOWN_ID_CHARS:
        shown += f"… ({len(value)} characters)"
    raise ValueError(
        f"{what} {shown} is not an identifier of the API's shape (ASCII letters, digits, "
        f"_ and -, 1 to {MAX_ID_LENGTH} characters); refused before it is used"
    )


def safe_request_id(value: Any) -> str | None:
    """A request id of the API's shape, else None: a request id is only ever shown (in an
    error or a log line), so one of another shape is left out rather than shown."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def problems(exc: ValidationError, limit: int = 5) -> str:
    """What a validation error found, one ``field: message`` per problem; never the input (a
    body can be megabytes long, and holds what the server chose to put there)."""
    found = exc.errors(include_url=False, include_input=False, include_context=False)
    shown = [f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in found[:limit]]
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(shown) + more


BatchId = Annotated[str, AfterValidator(check_id)]
"""A batch id from the server: checked before anything can make it a path or a URL."""
MessageId = Annotated[str, AfterValidator(lambda v: check_id(v, "message id"))]
RequestId = Annotated[str | None, BeforeValidator(safe_request_id)]
MAX_REQUESTS_PER_BATCH = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
"""The API's "256 MB" read as binary megabytes (the lenient reading, used by the emulator).
Sharding in ``airflow_batches.jobs`` stays under 256,000,000 bytes, safe under either one."""

RESULTS_RETENTION_DAYS = 29
BATCH_EXPIRY_HOURS = 24

ProcessingStatus = Literal["in_progress", "canceling", "ended"]
ResultType = Literal["succeeded", "errored", "canceled", "expired"]
RESULT_TYPES: tuple[ResultType, ...] = ("succeeded", "errored", "canceled", "expired")

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
]


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class RequestCounts(_Response):
    """Requests of a batch by state; the five always sum to the batch's size."""

    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


class MessageBatch(_Response):
    id: BatchId
    type: Literal["message_batch"] = "message_batch"
    processing_status: ProcessingStatus
    request_counts: RequestCounts
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    archived_at: datetime | None = None
    """Set once the results are gone (29 days after creation)."""
    cancel_initiated_at: datetime | None = None
    results_url: str | None = None
    """Absolute URL of the JSONL results; null until the batch has ended. Followed as given,
    but only on the API's origin or one of the client's ``results_origins``."""

    @property
    def is_ended(self) -> bool:
        return self.processing_status == "ended"


class MessageBatchPage(_Response):
    data: list[MessageBatch]
    has_more: bool
    first_id: BatchId | None = None
    last_id: BatchId | None = None


class DeletedMessageBatch(_Response):
    id: BatchId
    type: Literal["message_batch_deleted"] = "message_batch_deleted"


class ErrorDetail(_Response):
    type: str
    message: str = ""


class ErrorBody(_Response):
    """The API's error envelope, both for HTTP errors and for errored result lines."""

    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: RequestId = None


class CacheCreation(_Response):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class ServerToolUse(_Response):
    web_search_requests: int = 0
    web_fetch_requests: int = 0


class Usage(_Response):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: CacheCreation | None = None
    server_tool_use: ServerToolUse | None = None
    service_tier: str | None = None


class ContentBlock(_Response):
    """One typed block (text, tool_use, thinking, ...); fields beyond ``type`` pass through."""

    type: str


class Message(_Response):
    id: MessageId
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


class SucceededResult(_Response):
    type: Literal["succeeded"]
    message: Message


class ErroredResult(_Response):
    type: Literal["errored"]
    error: ErrorBody


class CanceledResult(_Response):
    type: Literal["canceled"]


class ExpiredResult(_Response):
    type: Literal["expired"]


BatchResult = Annotated[
    SucceededResult | ErroredResult | CanceledResult | ExpiredResult,
    Field(discriminator="type"),
]


class BatchResultLine(_Response):
    """One line of a batch's JSONL results."""

    custom_id: str
    result: BatchResult


RESULT_LINE_ADAPTER: TypeAdapter[BatchResultLine] = TypeAdapter(BatchResultLine)


# --- requests (strict) --------------------------------------------------------------------


def _refuse(faults: list[Fault]) -> None:
    """The shape's faults as a pydantic error: a ``ValueError`` in a validator, one
    ``field: message`` per fault."""
    if faults:
        raise ValueError("; ".join(f"{fault.field}: {fault.message}" for fault in faults))


class MessageParams(BaseModel):
    """Messages create parameters of one batch request.

    Only what no request can be sent with is refused here (``_request_shape.CLIENT_CHECKS``);
    any other parameter (tools, images, system blocks, cache_control, thinking, metadata,
    beta fields, ...) is kept exactly as given.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int
    messages: list[dict[str, Any]]

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            _refuse(params_faults(data, checks=CLIENT_CHECKS))
        return data


class BatchRequest(BaseModel):
    """One item of a create call: ``{"custom_id": ..., "params": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    custom_id: str
    params: MessageParams

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            faults = request_faults(data)
            if isinstance(data.get("params"), MessageParams):  # an object, checked already
                faults = [fault for fault in faults if fault.path != ("params",)]
            _refuse(faults)
        return data


class CreateBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: Annotated[list[BatchRequest], Field(min_length=1, max_length=MAX_REQUESTS_PER_BATCH)]

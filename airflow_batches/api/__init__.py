"""Client of the Message Batches API. Nothing under this package imports Airflow.

Layout: ``_settings`` (options, the key), ``_base`` (request specs), ``_answers`` (parsing,
the retry-or-raise decision), ``_results`` (result streams and resumable downloads: how to read
results that survive a connection cut is described there), ``_sync`` / ``_async`` (the two
thin shells), ``_errors``, ``_retry``, ``_models``, ``_request_shape`` (a request's shape, for
every caller), ``_envelope``, ``_lines``, ``_pricing``, ``_rules``, ``_model_table``.
"""

from typing import TYPE_CHECKING

from airflow_batches._lazy import lazy_names
from airflow_batches.api._answers import retry_or_raise
from airflow_batches.api._async import AsyncClient
from airflow_batches.api._envelope import encode_request_line, iter_create_body
from airflow_batches.api._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchesError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    ResponseValidationError,
    ResultsChangedError,
    ResultsExpiredError,
    ResultsNotReadyError,
    ResultsTooLargeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UntrustedURLError,
    status_error_class,
)
from airflow_batches.api._lines import LineDecoder, aiter_lines, iter_lines
from airflow_batches.api._models import (
    MAX_BATCH_BYTES,
    MAX_REQUESTS_PER_BATCH,
    RESULT_LINE_ADAPTER,
    RESULT_TYPES,
    BatchRequest,
    BatchResult,
    BatchResultLine,
    CanceledResult,
    DeletedMessageBatch,
    ErrorBody,
    ErroredResult,
    ExpiredResult,
    Message,
    MessageBatch,
    MessageBatchPage,
    MessageParams,
    RequestCounts,
    SucceededResult,
    Usage,
)
from airflow_batches.api._request_shape import CUSTOM_ID_PATTERN
from airflow_batches.api._results import AsyncResultsStream, ResultsStream
from airflow_batches.api._retry import RetryPolicy, retry_after_seconds, retry_delay, should_retry
from airflow_batches.api._settings import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    ClientSettings,
    Secret,
)
from airflow_batches.api._sync import Client

if TYPE_CHECKING:
    from airflow_batches.api._pricing import (
        ModelPrice,
        PriceTable,
        load_price_table,
        tokens_cost,
        usage_cost,
    )

# Prices load on first use: a trigger that only polls never needs them (the triggerer imports
# it inside its event loop, where every millisecond of import blocks every other trigger).
_PRICING = frozenset({"ModelPrice", "PriceTable", "load_price_table", "tokens_cost", "usage_cost"})

__all__ = [
    "CUSTOM_ID_PATTERN",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "MAX_BATCH_BYTES",
    "MAX_REQUESTS_PER_BATCH",
    "RESULT_LINE_ADAPTER",
    "RESULT_TYPES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncResultsStream",
    "AuthenticationError",
    "BadRequestError",
    "BatchRequest",
    "BatchResult",
    "BatchResultLine",
    "BatchesError",
    "CanceledResult",
    "Client",
    "ClientSettings",
    "ConflictError",
    "DeletedMessageBatch",
    "ErrorBody",
    "ErroredResult",
    "ExpiredResult",
    "GatewayTimeoutError",
    "InternalServerError",
    "LineDecoder",
    "Message",
    "MessageBatch",
    "MessageBatchPage",
    "MessageParams",
    "ModelPrice",
    "NotFoundError",
    "OverloadedError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PriceTable",
    "RateLimitError",
    "RequestCounts",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ResponseValidationError",
    "ResultsChangedError",
    "ResultsExpiredError",
    "ResultsNotReadyError",
    "ResultsStream",
    "ResultsTooLargeError",
    "RetryPolicy",
    "Secret",
    "ServiceUnavailableError",
    "SucceededResult",
    "UnprocessableEntityError",
    "UntrustedURLError",
    "Usage",
    "aiter_lines",
    "encode_request_line",
    "iter_create_body",
    "iter_lines",
    "load_price_table",
    "retry_after_seconds",
    "retry_delay",
    "retry_or_raise",
    "should_retry",
    "status_error_class",
    "tokens_cost",
    "usage_cost",
]


__getattr__, __dir__ = lazy_names(__name__, dict.fromkeys(_PRICING, "._pricing"))

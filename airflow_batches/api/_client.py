"""The old home of the client, kept so its import paths still work.

The client now lives in ``_settings`` (options, the key), ``_base`` (request specs),
``_answers`` (parsing, the retry-or-raise decision), ``_results`` (streams, resumable
downloads), ``_sync`` and ``_async`` (the two shells). Import from ``airflow_batches.api``.
"""

from airflow_batches.api._answers import ModelT, retry_or_raise, status_error
from airflow_batches.api._async import AsyncClient
from airflow_batches.api._base import (
    BATCHES_PATH,
    AsyncBodySource,
    BatchRef,
    BodySource,
    ListParams,
    RequestSpec,
    _BaseClient,
    next_page,
)
from airflow_batches.api._results import AsyncResultsStream, ResultsDownload, ResultsStream
from airflow_batches.api._settings import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    ClientOptions,
    ClientSettings,
    Secret,
    make_settings,
    tls_context,
)
from airflow_batches.api._sync import Client

__all__ = [
    "BATCHES_PATH",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AsyncBodySource",
    "AsyncClient",
    "AsyncResultsStream",
    "BatchRef",
    "BodySource",
    "Client",
    "ClientOptions",
    "ClientSettings",
    "ListParams",
    "ModelT",
    "RequestSpec",
    "ResultsDownload",
    "ResultsStream",
    "Secret",
    "_BaseClient",
    "make_settings",
    "next_page",
    "retry_or_raise",
    "status_error",
    "tls_context",
]

"""airflow-batches: the Message Batches API from Airflow.

Importing the package does not import Airflow: the API client (``airflow_batches.api``) and
the emulator work without it. The Airflow classes load on first access.
"""

from __future__ import annotations

from airflow_batches._lazy import lazy_names
from airflow_batches._version import __version__

_LAZY = {
    "Client": "airflow_batches.api",
    "AsyncClient": "airflow_batches.api",
    "MessageBatchesHook": "airflow_batches.hooks.batches",
    "SubmitBatchOperator": "airflow_batches.operators.submit",
    "BatchSensor": "airflow_batches.sensors.batch",
    "BatchTrigger": "airflow_batches.triggers.batch",
    "FetchResultsOperator": "airflow_batches.operators.fetch",
    "EvaluateResultsOperator": "airflow_batches.operators.evaluate",
    "ResultRow": "airflow_batches.jobs.results._rows",
    "read_results": "airflow_batches.operators._output",
}

__all__ = [
    "AsyncClient",
    "BatchSensor",
    "BatchTrigger",
    "Client",
    "EvaluateResultsOperator",
    "FetchResultsOperator",
    "MessageBatchesHook",
    "ResultRow",
    "SubmitBatchOperator",
    "__version__",
    "read_results",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

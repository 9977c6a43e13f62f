"""A logical job over one or more batches: validation, sharding, ledger, fetch, manifest.

Nothing in this package imports Airflow: the operators are thin shells over it.

The names below load on first access, not with the package: the triggerer imports
``airflow_batches.triggers.batch`` inside its event loop, and the wait it needs must not
pull in validation, submission and fetching on the way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_batches.jobs._fetch import RETRYABLE_ERROR_TYPES, IncompleteResultsError
    from airflow_batches.jobs._ledger import BatchInfo, JobDescriptor, Ledger
    from airflow_batches.jobs._prepare import (
        Limits,
        Prepared,
        Problem,
        RequestValidationError,
        RequestValidator,
        prepare,
        records_from_items,
        records_from_jsonl,
    )
    from airflow_batches.jobs._progress import JobProgress, OutcomePolicy, judge
    from airflow_batches.jobs._scan import ResultRecord, scan_result_line
    from airflow_batches.jobs._submit import JobSubmitter, stage_requests
    from airflow_batches.jobs._tally import ResultTally

_HOME = {
    "RETRYABLE_ERROR_TYPES": "_fetch",
    "IncompleteResultsError": "_fetch",
    "BatchInfo": "_ledger",
    "JobDescriptor": "_ledger",
    "Ledger": "_ledger",
    "Limits": "_prepare",
    "Prepared": "_prepare",
    "Problem": "_prepare",
    "RequestValidationError": "_prepare",
    "RequestValidator": "_prepare",
    "prepare": "_prepare",
    "records_from_items": "_prepare",
    "records_from_jsonl": "_prepare",
    "JobProgress": "_progress",
    "OutcomePolicy": "_progress",
    "judge": "_progress",
    "ResultRecord": "_scan",
    "scan_result_line": "_scan",
    "JobSubmitter": "_submit",
    "stage_requests": "_submit",
    "ResultTally": "_tally",
}

__all__ = [
    "RETRYABLE_ERROR_TYPES",
    "BatchInfo",
    "IncompleteResultsError",
    "JobDescriptor",
    "JobProgress",
    "JobSubmitter",
    "Ledger",
    "Limits",
    "OutcomePolicy",
    "Prepared",
    "Problem",
    "RequestValidationError",
    "RequestValidator",
    "ResultRecord",
    "ResultTally",
    "judge",
    "prepare",
    "records_from_items",
    "records_from_jsonl",
    "scan_result_line",
    "stage_requests",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""A logical job over one or more batches: validation, sharding, ledger, fetch, manifest.

Nothing in this package imports Airflow: the operators are thin shells over it.
"""

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

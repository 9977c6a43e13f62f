"""A job's results: every read (``_download``), the line checks (``_checks``), the per-line
scan and totals (``_scan``, ``_totals``), the joins (``_join``), the sinks and the publish
(``_sinks``, ``_publish``), the manifest (``_manifest``), whose a destination is (``_owner``),
the fetch's attempts and workflow (``_attempts``, ``_fetch``) and reading it back as rows
(``_rows``)."""

from __future__ import annotations

from airflow_batches.jobs.results._attempts import (
    Attempt,
    FetchOptions,
    FetchState,
    NotEndedError,
    WaitFor,
)
from airflow_batches.jobs.results._checks import (
    RETRYABLE_ERROR_TYPES,
    ForeignResultsError,
    IncompleteResultsError,
    Reader,
    XComTooLargeError,
    stream_final_lines,
)
from airflow_batches.jobs.results._download import DownloadPolicy
from airflow_batches.jobs.results._fetch import FetchWorkflow
from airflow_batches.jobs.results._manifest import MANIFEST_FILE, Manifest, RunRef, file_names
from airflow_batches.jobs.results._owner import (
    OWNER_FILE,
    DestinationHeldError,
    IsRunning,
    check_destination,
    claim_destination,
    release_destination,
)
from airflow_batches.jobs.results._publish import Published
from airflow_batches.jobs.results._rows import ResultRow, rows_from_files, rows_from_lines
from airflow_batches.jobs.results._scan import ResultRecord, scan_result_line
from airflow_batches.jobs.results._sinks import FileSinks, XComCollector, read_cached_lines
from airflow_batches.jobs.results._totals import ResultTally

__all__ = [
    "MANIFEST_FILE",
    "OWNER_FILE",
    "RETRYABLE_ERROR_TYPES",
    "Attempt",
    "DestinationHeldError",
    "DownloadPolicy",
    "FetchOptions",
    "FetchState",
    "FetchWorkflow",
    "FileSinks",
    "ForeignResultsError",
    "IncompleteResultsError",
    "IsRunning",
    "Manifest",
    "NotEndedError",
    "Published",
    "Reader",
    "ResultRecord",
    "ResultRow",
    "ResultTally",
    "RunRef",
    "WaitFor",
    "XComCollector",
    "XComTooLargeError",
    "check_destination",
    "claim_destination",
    "file_names",
    "read_cached_lines",
    "release_destination",
    "rows_from_files",
    "rows_from_lines",
    "scan_result_line",
    "stream_final_lines",
]

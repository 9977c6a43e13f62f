"""A logical job over one or more batches, with no Airflow: one sub-package per stage.

The stages and the one way they import each other (docs/architecture.md)::

    shared (this folder) <- prepare <- {cost, cache} <- submit <- results
    wait: imports only ``airflow_batches.api`` (the triggerer loads nothing else)

``prepare``: input and pre-flight; ``cost``: the estimate and the spend guard; ``cache``: the
cross-run cache; ``submit``: ledger, registry and the exactly-once create; ``wait``: waiting
for batches to end; ``results``: download, line checks, joins, publish and manifest. Each
stage's ``__init__`` is its public surface; the Airflow shells and ``evals`` import nothing
else of this package. Shared by every stage: storage paths (``_store``), the disk index
(``_index``), id digests (``_ids``), depth-safe JSON reading (``_nesting``) and the job
descriptor (``_descriptor``), reading a file alongside the results (``_lookahead``).

The names below load on first access, not with the package: the triggerer imports
``airflow_batches.triggers.batch`` inside its event loop, and the wait it needs must not
pull in validation, submission and fetching on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_batches._lazy import lazy_names

if TYPE_CHECKING:
    from airflow_batches.jobs._descriptor import (
        BatchInfo,
        JobDescriptor,
        descriptor_for_batches,
        job_key,
    )
    from airflow_batches.jobs._index import DiskIndex
    from airflow_batches.jobs._lookahead import Lookahead
    from airflow_batches.jobs._nesting import decode_deep
    from airflow_batches.jobs._store import (
        JobStore,
        StoragePath,
        atomic_writer,
        child,
        ensure_dir,
        file_name,
        fresh,
        name_clash,
        open_to_read,
        path_part,
    )
    from airflow_batches.jobs.prepare import (
        Limits,
        Prepared,
        Problem,
        RequestValidationError,
        RequestValidator,
        prepare,
        records_from_items,
        records_from_jsonl,
        stage_requests,
    )
    from airflow_batches.jobs.results import (
        RETRYABLE_ERROR_TYPES,
        IncompleteResultsError,
        ResultRecord,
        ResultTally,
        scan_result_line,
    )
    from airflow_batches.jobs.submit import JobSubmitter, Ledger
    from airflow_batches.jobs.wait import JobProgress, OutcomePolicy, judge

_HOME = {
    "BatchInfo": "._descriptor",
    "JobDescriptor": "._descriptor",
    "descriptor_for_batches": "._descriptor",
    "job_key": "._descriptor",
    "DiskIndex": "._index",
    "Lookahead": "._lookahead",
    "decode_deep": "._nesting",
    "JobStore": "._store",
    "StoragePath": "._store",
    "atomic_writer": "._store",
    "child": "._store",
    "ensure_dir": "._store",
    "file_name": "._store",
    "fresh": "._store",
    "name_clash": "._store",
    "open_to_read": "._store",
    "path_part": "._store",
    "Limits": ".prepare",
    "Prepared": ".prepare",
    "Problem": ".prepare",
    "RequestValidationError": ".prepare",
    "RequestValidator": ".prepare",
    "prepare": ".prepare",
    "records_from_items": ".prepare",
    "records_from_jsonl": ".prepare",
    "stage_requests": ".prepare",
    "RETRYABLE_ERROR_TYPES": ".results",
    "IncompleteResultsError": ".results",
    "ResultRecord": ".results",
    "ResultTally": ".results",
    "scan_result_line": ".results",
    "JobSubmitter": ".submit",
    "Ledger": ".submit",
    "JobProgress": ".wait",
    "OutcomePolicy": ".wait",
    "judge": ".wait",
}

__all__ = [
    "RETRYABLE_ERROR_TYPES",
    "BatchInfo",
    "DiskIndex",
    "IncompleteResultsError",
    "JobDescriptor",
    "JobProgress",
    "JobStore",
    "JobSubmitter",
    "Ledger",
    "Limits",
    "Lookahead",
    "OutcomePolicy",
    "Prepared",
    "Problem",
    "RequestValidationError",
    "RequestValidator",
    "ResultRecord",
    "ResultTally",
    "StoragePath",
    "atomic_writer",
    "child",
    "decode_deep",
    "descriptor_for_batches",
    "ensure_dir",
    "file_name",
    "fresh",
    "job_key",
    "judge",
    "name_clash",
    "open_to_read",
    "path_part",
    "prepare",
    "records_from_items",
    "records_from_jsonl",
    "scan_result_line",
    "stage_requests",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME)

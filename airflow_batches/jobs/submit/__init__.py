"""Submitting exactly once: the ledger and where it is kept (``_ledger``), the deployment's
registry of claims and open create calls (``_registry``), each create call's window
(``_windows``), adopting a batch whose create answer was lost (``_adopt``), and the one
submission sequence (``_submitter``)."""

from __future__ import annotations

from airflow_batches.jobs.submit._ledger import (
    FileLedger,
    Ledger,
    LedgerBackend,
    MemoryLedger,
    batch_infos,
    descriptor_from_ledger,
    new_ledger,
)
from airflow_batches.jobs.submit._registry import Registry
from airflow_batches.jobs.submit._submitter import JobSubmitter, Submission, submit_job
from airflow_batches.jobs.submit._windows import utcnow

__all__ = [
    "FileLedger",
    "JobSubmitter",
    "Ledger",
    "LedgerBackend",
    "MemoryLedger",
    "Registry",
    "Submission",
    "batch_infos",
    "descriptor_from_ledger",
    "new_ledger",
    "submit_job",
    "utcnow",
]

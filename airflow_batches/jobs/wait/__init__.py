"""Waiting for batches to end: the I/O-free core and its worker and triggerer loops
(``_core``), the triggerer's shared poller (``_poller``) and its waiting room (``_room``),
progress lines and the wait's outcome (``_progress``), the start-up heap frozen once
(``_heap``). It imports only ``api``: the triggerer
loads nothing else of this package."""

from __future__ import annotations

from airflow_batches.jobs.wait._core import (
    DEFER_TIMEOUT_MARGIN,
    WaitCore,
    WaitSettings,
    cancel_in_triggerer,
    cancel_in_worker,
    step_in_worker,
    wait_in_triggerer,
    wait_in_worker,
)
from airflow_batches.jobs.wait._poller import shared_poller
from airflow_batches.jobs.wait._progress import (
    JobProgress,
    OutcomePolicy,
    Severity,
    WaitEvent,
    batch_summaries,
    format_duration,
    judge,
)

__all__ = [
    "DEFER_TIMEOUT_MARGIN",
    "JobProgress",
    "OutcomePolicy",
    "Severity",
    "WaitCore",
    "WaitEvent",
    "WaitSettings",
    "batch_summaries",
    "cancel_in_triggerer",
    "cancel_in_worker",
    "format_duration",
    "judge",
    "shared_poller",
    "step_in_worker",
    "wait_in_triggerer",
    "wait_in_worker",
]

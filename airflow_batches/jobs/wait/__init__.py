"""Waiting for batches to end: the I/O-free core and its worker and triggerer loops
(``_core``), the triggerer's shared poller (``_poller``) and its waiting room (``_room``),
progress lines and the wait's outcome (``_progress``), the start-up heap frozen once
(``_heap``). It imports only ``api``: the triggerer loads nothing else of this package.

The names below load on first access, as ``jobs``' do: the triggerer's shell freezes the
start-up heap (``_heap``) before it imports the rest, in a thread
(``airflow_batches.triggers.batch.load_wait``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_batches._lazy import lazy_names

if TYPE_CHECKING:
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
    from airflow_batches.jobs.wait._heap import freeze_startup_heap
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

_HOME = {
    "DEFER_TIMEOUT_MARGIN": "._core",
    "WaitCore": "._core",
    "WaitSettings": "._core",
    "cancel_in_triggerer": "._core",
    "cancel_in_worker": "._core",
    "step_in_worker": "._core",
    "wait_in_triggerer": "._core",
    "wait_in_worker": "._core",
    "freeze_startup_heap": "._heap",
    "shared_poller": "._poller",
    "JobProgress": "._progress",
    "OutcomePolicy": "._progress",
    "Severity": "._progress",
    "WaitEvent": "._progress",
    "batch_summaries": "._progress",
    "format_duration": "._progress",
    "judge": "._progress",
}

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
    "freeze_startup_heap",
    "judge",
    "shared_poller",
    "step_in_worker",
    "wait_in_triggerer",
    "wait_in_worker",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME)

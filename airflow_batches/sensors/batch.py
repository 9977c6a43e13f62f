"""BatchSensor: wait for a job's batches to end, deferring to the triggerer by default."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
)
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs.wait import (
    JobProgress,
    OutcomePolicy,
    Severity,
    WaitEvent,
    batch_summaries,
    judge,
)
from airflow_batches.operators._common import coerce_batch_ids, coerce_job
from airflow_batches.operators._failures import task_errors, wait_error
from airflow_batches.operators._links import WaitBatchesLink
from airflow_batches.operators._wait_mixin import WaitMixin, seconds

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class BatchSensor(WaitMixin, BaseSensorOperator):
    """Wait until every batch of a job has ``processing_status == "ended"``.

    Pokes once; if work is left it defers to ``BatchTrigger`` (no worker slot held) or, with
    ``deferrable=False``, keeps polling in the worker. How it waits (``deferrable``,
    ``poke_interval``, ``max_poke_interval``, ``backoff_factor``, ``timeout``,
    ``cancel_on_timeout``, ``cancel_on_kill``, ``max_transient_errors``) is the wait contract
    it shares with ``FetchResultsOperator`` (``operators/_wait_mixin.WaitMixin``;
    docs/operators.md, *Waiting*). ``timeout`` defaults to 26 h: batches expire after 24 h.

    Outcome: every request canceled -> skipped; errored / expired requests -> a warning or,
    with ``on_errored="fail"`` / ``on_expired="fail"``, a failure; ``min_success_ratio`` fails
    the task below that share of succeeded requests. Returns a summary of the batches.

    Of ``BaseSensorOperator``'s own parameters, ``soft_fail`` and ``never_fail`` work as for any
    sensor; ``exponential_backoff=True`` makes the interval at least double (``backoff_factor``
    raised to 2) and ``max_wait`` caps every interval (``poke_interval`` and
    ``max_poke_interval`` lowered to it); ``mode="reschedule"`` and ``silent_fail=True`` are
    refused (use ``deferrable=True``; transient poll failures are tolerated up to
    ``max_transient_errors``).

    :param job: the output of ``SubmitBatchOperator`` (templated), a batch id or a list of ids.
    :param conn_id: defaults to the job's connection.
    :param on_errored: ``"warn"`` or ``"fail"`` when a request errored.
    :param on_expired: ``"warn"`` or ``"fail"`` when a request expired.
    :param min_success_ratio: fail below this share of succeeded requests.
    """

    template_fields: Sequence[str] = ("job",)
    operator_extra_links = (WaitBatchesLink(),)
    ui_color = "#e4f0e8"

    def __init__(
        self,
        *,
        job: Any,
        conn_id: str | None = None,
        on_errored: Severity = "warn",
        on_expired: Severity = "warn",
        min_success_ratio: float | None = None,
        exponential_backoff: bool = False,
        max_wait: float | timedelta | None = None,
        silent_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("mode") == "reschedule":
            raise ValueError(
                "BatchSensor does not support mode='reschedule': use deferrable=True, which "
                "frees the worker slot and keeps polling in the triggerer"
            )
        if silent_fail:
            raise ValueError(
                "BatchSensor does not support silent_fail=True: a transient poll failure is "
                "tolerated up to max_transient_errors times in a row, a permanent one (a "
                "refused key, a batch that does not exist) fails the task; soft_fail=True or "
                "never_fail=True turn a failure into a skip"
            )
        super().__init__(exponential_backoff=exponential_backoff, max_wait=max_wait, **kwargs)
        self.job = job
        self.conn_id = conn_id
        self.policy = OutcomePolicy(on_errored, on_expired, min_success_ratio)
        # BaseSensorOperator's backoff knobs, honoured in our terms (its execute, which reads
        # them, is not the one that runs).
        if exponential_backoff:
            self.backoff_factor = max(self.backoff_factor, 2.0)
        if max_wait is not None:
            cap = seconds("max_wait", max_wait)
            self.poke_interval = min(self.poke_interval, cap)
            self.max_poke_interval = min(self.max_poke_interval, cap)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            with task_errors(self._conn_id()):
                event = self._wait()
            return self._finish(event)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            # The same soft_fail / never_fail semantics as Airflow's own poke loop (a deferred
            # wait gets them from BaseSensorOperator.resume_execution).
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping ({exc}): soft_fail is set") from exc
            raise

    def _wait(self) -> WaitEvent:
        descriptor = coerce_job(self.job)
        ids = coerce_batch_ids(self.job)
        if descriptor is not None and not ids:
            self.log.info(
                "The job sent no batch: every one of its %d request(s) was answered from the "
                "cross-run cache",
                descriptor.request_count,
            )
            return WaitEvent(status="ended", message="nothing was sent")
        self.log.info("Waiting for %d batch(es): %s", len(ids), ", ".join(ids))
        return self.wait_or_defer(
            conn_id=self._conn_id(),
            batch_ids=ids,
            created_at=descriptor.submitted_at.timestamp() if descriptor else None,
            method_name="execute_complete",
        )

    def _conn_id(self) -> str:
        descriptor = coerce_job(self.job)
        conn_id = self.conn_id or (descriptor.conn_id if descriptor else None)
        return conn_id or MessageBatchesHook.default_conn_name

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._finish(WaitEvent.model_validate(event))

    def _finish(self, event: WaitEvent) -> dict[str, Any]:
        if event.status == "timeout":
            raise AirflowSensorTimeout(event.message)
        if event.status == "error":
            raise wait_error(event, self._conn_id())
        if not event.batches:  # nothing was sent (the cross-run cache answered everything)
            return {"batch_ids": [], "counts": {}, "requests": 0, "elapsed_seconds": 0.0}
        progress = JobProgress.of(event.batches)
        self.log.info("All batches ended: %s", progress.line(event.elapsed))
        descriptor = coerce_job(self.job)
        cache = descriptor.cache if descriptor is not None else None
        verdict = judge(progress, self.policy, answered=int((cache or {}).get("hits", 0)))
        for message in verdict.messages:
            self.log.warning("%s", message)
        if verdict.action == "skip":
            raise AirflowSkipException("; ".join(verdict.messages))
        if verdict.action == "fail":
            raise AirflowException("; ".join(verdict.messages))
        return {
            "batch_ids": [b.id for b in event.batches],
            "counts": progress.counts,
            "requests": progress.requests,
            "elapsed_seconds": round(event.elapsed, 3),
            "batches": batch_summaries(event.batches),
        }

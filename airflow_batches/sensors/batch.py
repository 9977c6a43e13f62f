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
    conf,
)
from airflow_batches.api._retry import NOT_FOUND_GRACE
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs.wait import (
    JobProgress,
    OutcomePolicy,
    Severity,
    WaitEvent,
    WaitSettings,
    batch_summaries,
    judge,
)
from airflow_batches.operators._common import coerce_batch_ids, coerce_job
from airflow_batches.operators._failures import task_errors, wait_error
from airflow_batches.operators._links import WaitBatchesLink
from airflow_batches.operators._waiting import BatchWaiting

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class BatchSensor(BatchWaiting, BaseSensorOperator):
    """Wait until every batch of a job has ``processing_status == "ended"``.

    Pokes once; if work is left it defers to ``BatchTrigger`` (no worker slot held) or, with
    ``deferrable=False``, keeps polling in the worker. The poll interval grows from
    ``poke_interval`` by ``backoff_factor`` up to ``max_poke_interval``; ``retry-after`` is
    honoured; up to ``max_transient_errors`` consecutive transient failures are tolerated.

    Outcome: every request canceled -> skipped; errored / expired requests -> a warning or,
    with ``on_errored="fail"`` / ``on_expired="fail"``, a failure; ``min_success_ratio`` fails
    the task below that share of succeeded requests. Returns a summary of the batches.

    :param job: the output of ``SubmitBatchOperator`` (templated), a batch id or a list of ids.
    :param conn_id: defaults to the job's connection.
    :param timeout: seconds before giving up (default 26 h: batches expire after 24 h).
    :param cancel_on_timeout: cancel unfinished batches when the wait times out.
    :param cancel_on_kill: cancel unfinished batches when the task is killed (also while
        deferred from Airflow 3.3: the trigger's ``on_kill``; see docs/compatibility.md).
    """

    template_fields: Sequence[str] = ("job",)
    operator_extra_links = (WaitBatchesLink(),)
    ui_color = "#e4f0e8"

    def __init__(
        self,
        *,
        job: Any,
        conn_id: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60.0,
        max_poke_interval: float = 600.0,
        backoff_factor: float = 1.5,
        timeout: float | timedelta = timedelta(hours=26),
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = True,
        on_errored: Severity = "warn",
        on_expired: Severity = "warn",
        min_success_ratio: float | None = None,
        max_transient_errors: int = 10,
        **kwargs: Any,
    ) -> None:
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        if kwargs.get("mode") == "reschedule":
            raise ValueError(
                "BatchSensor does not support mode='reschedule': use deferrable=True, which "
                "frees the worker slot and keeps polling in the triggerer"
            )
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.job = job
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_poke_interval = max_poke_interval
        self.backoff_factor = backoff_factor
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.policy = OutcomePolicy(on_errored, on_expired, min_success_ratio)
        self.max_transient_errors = max_transient_errors

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
        started = self._clock()
        grace = descriptor.submitted_at.timestamp() + NOT_FOUND_GRACE if descriptor else None
        self.log.info("Waiting for %d batch(es): %s", len(ids), ", ".join(ids))
        return self.wait_or_defer(
            conn_id=self._conn_id(),
            batch_ids=ids,
            settings=WaitSettings(
                poke_interval=float(self.poke_interval),
                max_poke_interval=self.max_poke_interval,
                backoff_factor=self.backoff_factor,
                max_transient_errors=self.max_transient_errors,
                deadline=started + float(self.timeout),
                not_found_grace_until=grace,
                started_at=started,
                cancel_on_timeout=self.cancel_on_timeout,
            ),
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

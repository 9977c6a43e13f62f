"""BatchSensor: wait for a job's batches to end, deferring to the triggerer by default."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)
from airflow_batches.api import APIConnectionError, APIStatusError, Client, MessageBatch
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs._progress import (
    JobProgress,
    OutcomePolicy,
    Severity,
    Verdict,
    WaitEvent,
    batch_summaries,
    judge,
)
from airflow_batches.jobs._wait import (
    DEFER_TIMEOUT_MARGIN,
    NOT_FOUND_GRACE,
    Poller,
    PollingFailed,
    WaitTimeout,
)
from airflow_batches.operators._common import coerce_batch_ids, coerce_job
from airflow_batches.triggers.batch import BatchTrigger

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class BatchSensor(BaseSensorOperator):
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
        self._sleep: Callable[[float], None] = time.sleep
        self._watching: list[str] = []

    # -- resolution -----------------------------------------------------------------------

    def _resolve(self) -> tuple[list[str], str, float | None]:
        descriptor = coerce_job(self.job)
        ids = coerce_batch_ids(self.job)
        conn_id = self.conn_id or (descriptor.conn_id if descriptor else None)
        conn_id = conn_id or MessageBatchesHook.default_conn_name
        grace = None
        if descriptor is not None:
            grace = descriptor.submitted_at.timestamp() + NOT_FOUND_GRACE
        return ids, conn_id, grace

    @cached_property
    def _conn_id(self) -> str:
        return self._resolve()[1]

    def _client(self, conn_id: str) -> Client:
        return MessageBatchesHook(conn_id=conn_id).get_client(max_retries=0)

    # -- execution ------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._wait(context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            # The same soft_fail / never_fail semantics as Airflow's own poke loop (a deferred
            # wait gets them from BaseSensorOperator.resume_execution).
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping ({exc}): soft_fail is set") from exc
            raise

    def _wait(self, context: Context) -> dict[str, Any]:
        ids, conn_id, grace = self._resolve()
        self._watching = ids
        started = time.time()
        deadline = started + float(self.timeout)
        self.log.info("Waiting for %d batch(es): %s", len(ids), ", ".join(ids))
        with self._client(conn_id) as client:
            poller = self._poller(client, grace)
            try:
                batches = poller.poll_once(ids, errors=0)[0]
            except PollingFailed as exc:
                raise AirflowException(str(exc)) from exc
            if batches is not None and JobProgress.of(batches).all_ended:
                return self._finish(batches, time.time() - started)
            if batches is not None:
                self.log.info("%s", JobProgress.of(batches).line(0))
            if self.deferrable:
                self.defer(
                    trigger=BatchTrigger(
                        batch_ids=ids,
                        conn_id=conn_id,
                        poke_interval=self.poke_interval,
                        max_poke_interval=self.max_poke_interval,
                        backoff_factor=self.backoff_factor,
                        deadline=deadline,
                        cancel_on_timeout=self.cancel_on_timeout,
                        cancel_on_kill=self.cancel_on_kill,
                        max_transient_errors=self.max_transient_errors,
                        not_found_grace_until=grace,
                        started_at=started,
                    ),
                    method_name="execute_complete",
                    # A backstop only: the trigger times out first, and can cancel then.
                    timeout=timedelta(seconds=float(self.timeout) + DEFER_TIMEOUT_MARGIN),
                )
            try:
                batches = poller.wait(ids, started=started, deadline=deadline)
            except PollingFailed as exc:
                raise AirflowException(str(exc)) from exc
            except WaitTimeout as exc:
                if self.cancel_on_timeout:
                    self._cancel(client, ids)
                raise AirflowSensorTimeout(str(exc)) from exc
            return self._finish(batches, time.time() - started)

    def _poller(self, client: Client, grace: float | None) -> Poller:
        return Poller(
            client=client,
            log=self.log,
            poke_interval=float(self.poke_interval),
            max_poke_interval=self.max_poke_interval,
            backoff_factor=self.backoff_factor,
            max_transient_errors=self.max_transient_errors,
            not_found_grace_until=grace,
            sleep=self._sleep,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        result = WaitEvent.model_validate(event)
        if result.status == "timeout":
            raise AirflowSensorTimeout(result.message)
        if result.status == "error":
            raise AirflowException(result.message)
        return self._finish(result.batches, result.elapsed)

    def _finish(self, batches: list[MessageBatch], elapsed: float) -> dict[str, Any]:
        progress = JobProgress.of(batches)
        self.log.info("All batches ended: %s", progress.line(elapsed))
        verdict: Verdict = judge(progress, self.policy)
        for message in verdict.messages:
            self.log.warning("%s", message)
        if verdict.action == "skip":
            raise AirflowSkipException("; ".join(verdict.messages))
        if verdict.action == "fail":
            raise AirflowException("; ".join(verdict.messages))
        return {
            "batch_ids": [b.id for b in batches],
            "counts": progress.counts,
            "requests": progress.requests,
            "elapsed_seconds": round(elapsed, 3),
            "batches": batch_summaries(batches),
        }

    # -- cancellation ---------------------------------------------------------------------

    def _cancel(self, client: Client, ids: list[str]) -> None:
        for batch_id in ids:
            try:
                batch = client.retrieve(batch_id)
                if not batch.is_ended:
                    client.cancel(batch_id)
                    self.log.warning("Canceled batch %s", batch_id)
            except (APIStatusError, APIConnectionError) as exc:
                self.log.warning("Could not cancel batch %s: %s", batch_id, exc)

    def on_kill(self) -> None:
        """Cancel the unfinished batches when the task is killed while polling in the worker."""
        if not self.cancel_on_kill or not self._watching:
            return
        with self._client(self._conn_id) as client:
            self._cancel(client, self._watching)

"""Waiting on batches inside a task, the same way for the sensor and the fetch.

:meth:`BatchWaiting.wait_or_defer` polls once in the worker; if work is left it either defers
to :class:`BatchTrigger` (deferrable) or goes on polling in the worker. Both run the same wait
core and give back the same ``WaitEvent``; on timeout both cancel or not by the same setting,
and a task killed while waiting cancels its unfinished batches (``cancel_on_kill``) whether it
was polling in the worker (``on_kill`` here) or deferred (the trigger's ``on_kill``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs.wait import (
    DEFER_TIMEOUT_MARGIN,
    WaitCore,
    WaitEvent,
    WaitSettings,
    cancel_in_worker,
    step_in_worker,
    wait_in_worker,
)
from airflow_batches.triggers.batch import BatchTrigger


class BatchWaiting:
    """Mixin for operators that wait on batches; needs ``defer`` and ``log`` (BaseOperator)."""

    deferrable: bool
    cancel_on_kill: bool = True
    log: Any
    defer: Callable[..., Any]

    _watching: tuple[str, WaitCore] | None = None
    """While polling in the worker: the connection and the wait, for ``on_kill``."""
    _clock: Callable[[], float] = staticmethod(time.time)
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    def wait_or_defer(
        self,
        *,
        conn_id: str,
        batch_ids: Sequence[str],
        settings: WaitSettings,
        method_name: str,
        kwargs: Mapping[str, Any] | None = None,
    ) -> WaitEvent:
        """Wait for ``batch_ids`` to end, or defer and resume in ``method_name``."""
        core = WaitCore.of(batch_ids, settings)
        # Watched from the first poll on: a kill during it cancels too (every batch is
        # pending until an answer says otherwise).
        self._watching = (conn_id, core)
        try:
            with MessageBatchesHook(conn_id=conn_id).get_client(max_retries=0) as client:
                first = step_in_worker(client, core, log=self.log, clock=self._clock)
                if first.action == "sleep" and self.deferrable:
                    self._watching = None  # the trigger's on_kill takes over
                    self.defer(
                        trigger=self._trigger(conn_id, core),
                        method_name=method_name,
                        kwargs=dict(kwargs or {}),
                        timeout=_defer_timeout(settings, self._clock()),
                    )
                return wait_in_worker(
                    client, core, log=self.log, clock=self._clock, sleep=self._sleep, first=first
                )
        finally:
            self._watching = None

    def _trigger(self, conn_id: str, core: WaitCore) -> BatchTrigger:
        s = core.settings
        return BatchTrigger(
            batch_ids=core.batch_ids,
            conn_id=conn_id,
            poke_interval=s.poke_interval,
            max_poke_interval=s.max_poke_interval,
            backoff_factor=s.backoff_factor,
            deadline=s.deadline,
            cancel_on_timeout=s.cancel_on_timeout,
            cancel_on_kill=self.cancel_on_kill,
            max_transient_errors=s.max_transient_errors,
            not_found_grace_until=s.not_found_grace_until,
            started_at=s.started_at,
        )

    def on_kill(self) -> None:
        """Cancel the unfinished batches when the task is killed while polling in the worker."""
        watching = self._watching
        if watching is None:
            return
        if not self.cancel_on_kill:
            self.log.info("Task killed; batches left running (cancel_on_kill=False)")
            return
        conn_id, core = watching
        with MessageBatchesHook(conn_id=conn_id).get_client(max_retries=0) as client:
            cancel_in_worker(client, core, self.log)


def _defer_timeout(settings: WaitSettings, now: float) -> timedelta | None:
    # A backstop only: the trigger's own deadline comes first, and can cancel then.
    if settings.deadline is None:
        return None
    return timedelta(seconds=max(settings.deadline - now, 0.0) + DEFER_TIMEOUT_MARGIN)

"""The one wait contract of ``BatchSensor`` and ``FetchResultsOperator``.

:class:`WaitMixin` declares every setting of a wait once (:data:`WAIT_PARAMETERS`: one name,
type and default for both operators, documented once in docs/operators.md, *Waiting*), stores
them the same way (every duration as float seconds) and turns them into the wait core's
:class:`~airflow_batches.jobs.wait.WaitSettings` in one place (:meth:`WaitMixin.wait_or_defer`).

:meth:`WaitMixin.wait_or_defer` polls once in the worker; if work is left it either defers to
:class:`BatchTrigger` (deferrable) or goes on polling in the worker. Both run the same wait
core and give back the same ``WaitEvent``; on timeout both cancel or not by the same setting,
and a task killed while waiting cancels its unfinished batches (``cancel_on_kill``) whether it
was polling in the worker (``on_kill`` here) or deferred (the trigger's ``on_kill``).

The mixin derives from ``BaseOperator`` and comes first in each operator's bases: Airflow fills
``default_args`` into, and lets ``.partial()`` accept, only the parameters of the ``__init__``
of a ``BaseOperator`` subclass; a plain mixin's parameters would be neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_batches._compat import BaseOperator, BaseSensorOperator, conf
from airflow_batches.api._retry import NOT_FOUND_GRACE
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

WAIT_PARAMETERS = (
    "deferrable",
    "poke_interval",
    "max_poke_interval",
    "backoff_factor",
    "timeout",
    "cancel_on_timeout",
    "cancel_on_kill",
    "max_transient_errors",
)
"""The parameters :class:`WaitMixin` owns, in the order of its signature and of the docs."""


class WaitMixin(BaseOperator):
    """The wait settings of an operator that waits on batches, and the wait itself.

    :param deferrable: wait in the triggerer (no worker slot held) after a first poll.
    :param poke_interval: seconds (or a timedelta) between the first polls.
    :param max_poke_interval: the interval grows by ``backoff_factor`` up to this.
    :param backoff_factor: growth of the interval after each poll that finds work left.
    :param timeout: how long one wait may last (seconds or a timedelta) before it times out.
    :param cancel_on_timeout: cancel the unfinished batches when the wait times out.
    :param cancel_on_kill: cancel the unfinished batches when the task is killed, polling in
        the worker or deferred.
    :param max_transient_errors: consecutive transient poll failures tolerated.
    """

    _watching: tuple[str, WaitCore] | None = None
    """While polling in the worker: the connection and the wait, for ``on_kill``."""
    _clock: Callable[[], float] = staticmethod(time.time)
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = 60.0,
        max_poke_interval: float | timedelta = 600.0,
        backoff_factor: float = 1.5,
        timeout: float | timedelta = timedelta(hours=26),
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = True,
        max_transient_errors: int = 10,
        **kwargs: Any,
    ) -> None:
        poke = seconds("poke_interval", poke_interval)
        limit = seconds("timeout", timeout)
        if isinstance(self, BaseSensorOperator):
            # The sensor's base keeps these two too (and checks them again).
            kwargs.update(poke_interval=poke, timeout=limit)
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poke_interval: float = poke
        self.max_poke_interval = seconds("max_poke_interval", max_poke_interval)
        self.backoff_factor = float(backoff_factor)
        self.timeout: float = limit
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_transient_errors = max_transient_errors
        self.wait_settings(created_at=None)  # a bad setting fails when the DAG is parsed

    def wait_settings(self, *, created_at: float | None) -> WaitSettings:
        """The settings of a wait that starts now and may last ``timeout``.

        ``created_at``: when the batches waited for were created (epoch seconds); a 404 is
        taken for the API's read-after-create lag until ``NOT_FOUND_GRACE`` after it, and is
        final at once when None.
        """
        now = self._clock()
        return WaitSettings(
            poke_interval=self.poke_interval,
            max_poke_interval=self.max_poke_interval,
            backoff_factor=self.backoff_factor,
            max_transient_errors=self.max_transient_errors,
            deadline=now + self.timeout,
            not_found_grace_until=None if created_at is None else created_at + NOT_FOUND_GRACE,
            started_at=now,
            cancel_on_timeout=self.cancel_on_timeout,
        )

    def wait_or_defer(
        self,
        *,
        conn_id: str,
        batch_ids: Sequence[str],
        created_at: float | None,
        method_name: str,
        kwargs: Mapping[str, Any] | None = None,
    ) -> WaitEvent:
        """Wait for ``batch_ids`` to end, or defer and resume in ``method_name``."""
        settings = self.wait_settings(created_at=created_at)
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


def seconds(name: str, value: float | timedelta) -> float:
    """A duration parameter as float seconds; a clear error for anything else."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def _defer_timeout(settings: WaitSettings, now: float) -> timedelta | None:
    # A backstop only: the trigger's own deadline comes first, and can cancel then.
    if settings.deadline is None:
        return None
    return timedelta(seconds=max(settings.deadline - now, 0.0) + DEFER_TIMEOUT_MARGIN)

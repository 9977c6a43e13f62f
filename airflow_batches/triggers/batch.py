"""BatchTrigger: waits in the triggerer for every batch of a job to end, without a thread per wait.

The triggerer imports this module, and builds each trigger, inside its event loop: whatever
runs there blocks every other trigger on that triggerer. So this module imports nothing but
Airflow's trigger classes; the wait (``jobs.wait``, the API client, the hook: some 70 ms of
imports on an idle machine, more under load) is imported by :func:`load_wait`, in a thread,
when the first trigger of the process starts to run. Keep it so: ``python -X importtime``
shows the tree, and ``tests/test_public_api.py`` says what this module may load.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_batches.api import AsyncClient
    from airflow_batches.jobs.wait import WaitCore, WaitSettings

FRESHNESS = 0.5
"""A poll accepts a status read this fraction of the poke interval ago (by another trigger)."""

_loaded = False
_importing = threading.Lock()
"""One thread imports at a time: two importing the same modules in another order could each
hold a module another needs."""


def _import_wait() -> None:
    with _importing:
        _import_wait_names()


def _import_wait_names() -> None:
    # The names a wait uses, each loading its module (the API's come with them).
    from airflow_batches.api._settings import tls_context
    from airflow_batches.hooks.batches import MessageBatchesHook  # noqa: F401
    from airflow_batches.jobs.wait import (  # noqa: F401
        WaitCore,
        WaitEvent,
        WaitSettings,
        cancel_in_triggerer,
        shared_poller,
        wait_in_triggerer,
    )

    tls_context()  # the CA bundle, once per process (~40 ms in the loop otherwise)


async def load_wait() -> None:
    """Import what a wait needs, in a thread, once per process (see the module docstring).

    Triggers starting together may each run the thread; the later ones wait for the first in
    their threads, never in the loop."""
    global _loaded
    if not _loaded:
        from airflow_batches.jobs.wait import freeze_startup_heap

        # Airflow's heap out of the full collections first: one falling due while the thread
        # imports would hold the loop as long as it walks Airflow's objects (~0.1 s).
        freeze_startup_heap("start")
        await asyncio.to_thread(_import_wait)
        _loaded = True


async def connect(conn_id: str) -> AsyncClient:
    """An async client of the connection, read inside the triggerer (the key never travels)."""
    await load_wait()
    from airflow_batches.hooks.batches import MessageBatchesHook

    # Retries are decided by the wait core, per poll, so that waits stay visible in the log.
    return await MessageBatchesHook(conn_id=conn_id).get_async_client(max_retries=0)


class BatchTrigger(BaseTrigger):
    """Poll batches until all have ended, the deadline passes, or an error is permanent.

    Everything it stores is in its keyword arguments: ids, the connection id and timing;
    never the API key (the hook reads it from the connection inside the triggerer). It fires
    one event, a :class:`~airflow_batches.jobs.wait._progress.WaitEvent` as JSON.

    Every BatchTrigger of one connection on one triggerer reads statuses through one
    :class:`~airflow_batches.jobs.wait._poller.SharedPoller` (list pages, not one retrieve per batch
    per trigger), and accepts a status read up to half its ``poke_interval`` ago.

    :param batch_ids: the batches to wait for.
    :param conn_id: the Message Batches connection.
    :param poke_interval: seconds between polls at first.
    :param max_poke_interval: the interval grows by ``backoff_factor`` up to this.
    :param backoff_factor: growth of the interval after each poll that finds work left.
    :param deadline: epoch seconds after which the wait times out (absolute, so it survives
        a triggerer restart).
    :param cancel_on_timeout: cancel unfinished batches when the deadline passes.
    :param cancel_on_kill: cancel unfinished batches when a user kills the deferred task.
    :param max_transient_errors: consecutive transient failures tolerated.
    :param not_found_grace_until: epoch seconds until which a 404 counts as transient.
    :param started_at: epoch seconds the wait began (for elapsed time in the log).
    """

    def __init__(
        self,
        *,
        batch_ids: list[str],
        conn_id: str,
        poke_interval: float = 60.0,
        max_poke_interval: float = 600.0,
        backoff_factor: float = 1.5,
        deadline: float | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = True,
        max_transient_errors: int = 10,
        not_found_grace_until: float | None = None,
        started_at: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.batch_ids = list(dict.fromkeys(batch_ids))
        self.conn_id = conn_id
        self.poke_interval = float(poke_interval)
        self.max_poke_interval = float(max(max_poke_interval, poke_interval))
        self.backoff_factor = float(max(backoff_factor, 1.0))
        self.deadline = deadline
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_transient_errors = max_transient_errors
        self.not_found_grace_until = not_found_grace_until
        self.started_at = started_at if started_at is not None else time.time()

    @functools.cached_property
    def core(self) -> WaitCore:
        """The wait's state (made on first use: in the triggerer, after :func:`load_wait`)."""
        from airflow_batches.jobs.wait import WaitCore

        return WaitCore.of(self.batch_ids, self.settings())

    def settings(self) -> WaitSettings:
        from airflow_batches.jobs.wait import WaitSettings

        return WaitSettings(
            poke_interval=self.poke_interval,
            max_poke_interval=self.max_poke_interval,
            backoff_factor=self.backoff_factor,
            max_transient_errors=self.max_transient_errors,
            deadline=self.deadline,
            not_found_grace_until=self.not_found_grace_until,
            started_at=self.started_at,
            cancel_on_timeout=self.cancel_on_timeout,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_ids": self.batch_ids,
                "conn_id": self.conn_id,
                "poke_interval": self.poke_interval,
                "max_poke_interval": self.max_poke_interval,
                "backoff_factor": self.backoff_factor,
                "deadline": self.deadline,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "max_transient_errors": self.max_transient_errors,
                "not_found_grace_until": self.not_found_grace_until,
                "started_at": self.started_at,
            },
        )

    async def _client(self) -> AsyncClient:
        return await connect(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await load_wait()
        from airflow_batches.jobs.wait import shared_poller, wait_in_triggerer

        poller = shared_poller(self.conn_id, functools.partial(connect, self.conn_id))
        max_age = self.poke_interval * FRESHNESS
        async with poller.subscribe(self.batch_ids, max_age=max_age) as poll:
            event = await wait_in_triggerer(poller.client, self.core, log=self.log, poll=poll)
        yield TriggerEvent(event.model_dump(mode="json"))  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        """Cancel the unfinished batches when a user kills the deferred task (Airflow 3.3)."""
        if not self.cancel_on_kill:
            self.log.info("Task killed; batches left running (cancel_on_kill=False)")
            return
        client = await self._client()
        from airflow_batches.jobs.wait import cancel_in_triggerer

        try:
            await cancel_in_triggerer(client, self.core, self.log)
        finally:
            await client.aclose()

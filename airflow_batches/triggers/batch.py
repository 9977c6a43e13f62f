"""BatchTrigger: waits in the triggerer for every batch of a job to end, without threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow_batches._compat import BaseTrigger, TriggerEvent
from airflow_batches.api import APIConnectionError, APIStatusError, AsyncClient, MessageBatch
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs._progress import JobProgress, batch_summaries
from airflow_batches.jobs._wait import is_transient

CANCEL_TIMEOUT = 30.0
POLL_CONCURRENCY = 4


class BatchTrigger(BaseTrigger):
    """Poll batches until all have ended, the deadline passes, or an error is permanent.

    Everything it stores is in its keyword arguments: ids, the connection id and timing;
    never the API key (the hook reads it from the connection inside the triggerer).

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
        self._latest: dict[str, MessageBatch] = {}

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
        # Retries are decided here, per poll, so that waits stay visible in the log.
        return await MessageBatchesHook(conn_id=self.conn_id).get_async_client(max_retries=0)

    def _pending(self) -> list[str]:
        return [i for i in self.batch_ids if not (i in self._latest and self._latest[i].is_ended)]

    def _event(self, status: str, message: str = "") -> TriggerEvent:
        batches = [self._latest[i] for i in self.batch_ids if i in self._latest]
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "message": message,
                "batches": batch_summaries(batches),
                "elapsed": time.time() - self.started_at,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        interval = self.poke_interval
        errors = 0
        client = await self._client()
        try:
            while True:
                wait = interval
                try:
                    fresh = await self._retrieve_pending(client)
                except (APIStatusError, APIConnectionError) as exc:
                    now = time.time()
                    grace = self.not_found_grace_until
                    if not is_transient(exc, now=now, not_found_grace_until=grace):
                        yield self._event("error", f"polling failed permanently: {exc}")
                        return
                    errors += 1
                    if errors > self.max_transient_errors:
                        yield self._event(
                            "error", f"{errors} consecutive polls failed; last: {exc}"
                        )
                        return
                    retry_after = getattr(exc, "retry_after", None) or 0.0
                    wait = max(interval, retry_after)
                    self.log.warning(
                        "Poll failed (%s); attempt %d of %d, next in %.1fs",
                        exc,
                        errors,
                        self.max_transient_errors,
                        wait,
                    )
                else:
                    errors = 0
                    for batch in fresh:
                        self._latest[batch.id] = batch
                    progress = JobProgress.of(self._latest.values())
                    self.log.info(
                        "%s", progress.line(elapsed_seconds=time.time() - self.started_at)
                    )
                    if not self._pending():
                        yield self._event("ended")
                        return
                    interval = min(interval * self.backoff_factor, self.max_poke_interval)

                if self.deadline is not None:
                    remaining = self.deadline - time.time()
                    if remaining <= 0:
                        message = "the wait timed out before every batch ended"
                        if self.cancel_on_timeout:
                            canceled = await self._cancel_pending(client)
                            message += f"; canceled {', '.join(canceled) or 'none'}"
                        yield self._event("timeout", message)
                        return
                    wait = min(wait, remaining)
                await asyncio.sleep(wait)
        finally:
            await client.aclose()

    async def _retrieve_pending(self, client: AsyncClient) -> list[MessageBatch]:
        # A few at a time: a job of many batches must not burst the API's rate limit.
        gate = asyncio.Semaphore(POLL_CONCURRENCY)

        async def one(batch_id: str) -> MessageBatch:
            async with gate:
                return await client.retrieve(batch_id)

        # Keep what did come back even when one call fails, and let no call outlive the poll.
        answers = await asyncio.gather(*(one(i) for i in self._pending()), return_exceptions=True)
        batches = [a for a in answers if isinstance(a, MessageBatch)]
        for answer in answers:
            if isinstance(answer, BaseException):
                for batch in batches:
                    self._latest[batch.id] = batch
                raise answer
        return batches

    async def _cancel_pending(self, client: AsyncClient) -> list[str]:
        canceled: list[str] = []
        for batch_id in self._pending():
            try:
                batch = await asyncio.wait_for(client.cancel(batch_id), CANCEL_TIMEOUT)
            except (APIStatusError, APIConnectionError, TimeoutError) as exc:
                self.log.warning("Could not cancel batch %s: %s", batch_id, exc)
                continue
            self._latest[batch.id] = batch
            canceled.append(batch_id)
        if canceled:
            self.log.warning("Canceled batch(es) %s", ", ".join(canceled))
        return canceled

    async def on_kill(self) -> None:
        """Cancel the unfinished batches when a user kills the deferred task (Airflow 3.3)."""
        if not self.cancel_on_kill:
            self.log.info("Task killed; batches left running (cancel_on_kill=False)")
            return
        client = await self._client()
        try:
            await self._cancel_pending(client)
        finally:
            await client.aclose()

"""The polls waiting for the shared poller's next round (``_poller``), by batch.

A poll that cannot be answered from memory waits here until every batch it named has been
read at or after the time it asked from (``since``). Readings wake polls as they land: a poll
whose batches were all on the first list page does not wait for the rest of the round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["WaitRoom", "Waiter"]


class Waiter:
    """One waiting poll: the batches it still needs read, since when, and its future."""

    __slots__ = ("future", "missing", "since")

    def __init__(self, missing: set[str], since: float, future: asyncio.Future[None]) -> None:
        self.missing, self.since, self.future = missing, since, future


class WaitRoom:
    """Batch id -> the polls waiting for it to be read: what the next round reads."""

    __slots__ = ("_by_batch",)

    def __init__(self) -> None:
        self._by_batch: dict[str, list[Waiter]] = {}

    def __len__(self) -> int:
        """Batches some poll waits for."""
        return len(self._by_batch)

    def wanted(self) -> list[str]:
        return list(self._by_batch)

    def enter(self, stale: Iterable[str], since: float) -> Waiter:
        """Register a poll waiting for ``stale`` read at ``since`` or later."""
        waiter = Waiter(set(stale), since, asyncio.get_running_loop().create_future())
        for batch_id in waiter.missing:
            self._by_batch.setdefault(batch_id, []).append(waiter)
        return waiter

    async def wait(self, waiter: Waiter) -> None:
        """Until ``waiter``'s batches are read (or its round failed); it leaves the room
        however the wait ends, cancellation included."""
        try:
            await waiter.future
        finally:
            self._leave(waiter)

    def _leave(self, waiter: Waiter) -> None:
        for batch_id in waiter.missing:
            others = [w for w in self._by_batch.get(batch_id, ()) if w is not waiter]
            if others:
                self._by_batch[batch_id] = others
            else:
                self._by_batch.pop(batch_id, None)

    def heard(self, batch_id: str, at: float) -> None:
        """``batch_id`` was read at ``at``: wake the polls it was the last one missing for."""
        still: list[Waiter] = []
        for waiter in self._by_batch.pop(batch_id, ()):
            if at < waiter.since:  # asked after this reading was sent, for fresher
                still.append(waiter)
                continue
            waiter.missing.discard(batch_id)
            if not waiter.missing and not waiter.future.done():
                waiter.future.set_result(None)
        if still:
            self._by_batch[batch_id] = still

    def heard_all(self, at: float) -> None:
        """Every waited-for batch was answered at ``at`` (a failed list call stands for it)."""
        for batch_id in list(self._by_batch):
            self.heard(batch_id, at)

    def fail(self, exc: BaseException) -> None:
        """Wake every waiting poll with ``exc``: a bug or a broken client never hangs them."""
        for waiters in self._by_batch.values():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)

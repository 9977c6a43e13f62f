"""The create windows of one job's shards: each create call written down before it is sent.

A window says, on the server's clock (the ``Date`` of the API's answers), when a create call
was sent, when its failure was seen, and the latest its batch can have been made (the call's
timeout). The ledger keeps a shard's windows; the shared registry is told of each one, so that
other jobs see this job's open calls as rivals when they search for a batch of their own
(``_adopt``). ``JobSubmitter`` opens and closes them around every create call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_batches.api import Client
from airflow_batches.jobs.submit._ledger import Ledger, LedgerBackend, ShardRecord
from airflow_batches.jobs.submit._registry import (
    LONGEST_WINDOW,
    Intent,
    Registry,
    Window,
    new_token,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["MAX_INTENTS", "CreateWindows", "call_timeout"]

MAX_INTENTS = 10
"""Windows (and intents) kept per shard: the latest ones, the rejected ones dropped first."""


def call_timeout(client: Client) -> timedelta:
    """The latest a create call can still make its batch: its whole timeout (a read timeout of
    None means no limit: then the API's own ten minutes), at most the registry's longest
    window."""
    timeout = client.settings.timeout
    parts = [timeout.connect, timeout.write, timeout.read]
    return min(timedelta(seconds=sum(p if p else 600.0 for p in parts)), LONGEST_WINDOW)


class CreateWindows:
    """Opens, bounds and closes the windows of create calls, saving the ledger at each step
    and telling the registry (when there is one)."""

    def __init__(
        self,
        client: Client,
        backend: LedgerBackend,
        *,
        registry: Registry | None,
        job_id: str,
    ) -> None:
        self.client = client
        self.backend = backend
        self.registry = registry
        self.job_id = job_id
        self.call_timeout = call_timeout(client)

    def open(self, ledger: Ledger, shard: ShardRecord) -> Window:
        """A window for the create call about to be sent, saved before it is."""
        clock = self.client.server_clock
        opened = clock.now()
        window = Window(
            token=new_token(opened),
            opened=opened,
            until=opened + self.call_timeout,
            clocked=clock.known,
        )
        shard.intents.append(utcnow())
        if len(shard.intents) > MAX_INTENTS:  # only the first one is ever read back
            del shard.intents[1:-1]
        shard.windows = [w for w in shard.windows if not w.rejected][-MAX_INTENTS:]
        shard.windows.append(window)
        self.backend.save(ledger)
        self._tell(shard, window)
        return window

    def failed(self, ledger: Ledger, shard: ShardRecord, window: Window, *, rejected: bool) -> None:
        """The call failed: ``rejected`` when its answer says it created nothing (a 429)."""
        self._onto_server_clock(window)  # the failure's answer may have told the server's time
        window.seen = self.client.server_clock.now()
        window.rejected = rejected
        self.backend.save(ledger)
        self._tell(shard, window)

    def close_dead(self, ledger: Ledger, shard: ShardRecord) -> None:
        """The calls an earlier try left open died with it: whatever they made exists by now.

        Marking them seen bounds their windows (for this shard's search, and for other jobs,
        to whom they stay rivals until then) instead of leaving them open for a whole call
        timeout.
        """
        dead = [w for w in shard.windows if w.seen is None and not w.rejected]
        if not dead:
            return
        if not self.client.server_clock.known:
            self.client.list_page(limit=1)  # the server's time
        now = self.client.server_clock.now()
        for window in dead:
            self._onto_server_clock(window)
            window.seen = min(now, window.until)
        self.backend.save(ledger)
        for window in dead:
            self._tell(shard, window)

    def _tell(self, shard: ShardRecord, window: Window) -> None:
        if self.registry is not None:
            self.registry.open(
                Intent(
                    job_id=self.job_id,
                    shard=shard.index,
                    request_count=shard.request_count,
                    window=window,
                )
            )

    def _onto_server_clock(self, window: Window) -> None:
        """Move a window opened before the server's time was known onto it, once it is."""
        clock = self.client.server_clock
        if not window.clocked and clock.known:
            moved = window.on_server_clock(clock.offset)
            window.opened, window.until, window.clocked = moved.opened, moved.until, True

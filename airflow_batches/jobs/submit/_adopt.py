"""Finding the batch a lost create call made, or deciding that it cannot be told apart.

See ``JobSubmitter`` and docs/idempotency.md: a candidate is adopted only when it is the one
unclaimed batch of the shard's size created within the shard's own create windows (on the
server's clock), and no other job's create call of that size was open then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_batches.api import Client, MessageBatch
from airflow_batches.jobs.submit._ledger import Ledger, ShardRecord
from airflow_batches.jobs.submit._registry import MARGIN, Registry


def find_orphan(
    client: Client,
    ledger: Ledger,
    shard: ShardRecord,
    *,
    registry: Registry | None,
    job_id: str,
    clock_skew: timedelta,
    log: Any,
) -> MessageBatch | None:
    """The batch this shard's earlier create call made, if it can be told apart.

    The list is newest first, so the scan stops at the first batch older than the
    shard's first window. Candidates: the shard's request count, created within one of
    its windows (on the server's clock), claimed by no shard of this job nor any job in
    the registry. Adopted only if it is the single candidate and no rival call (another
    job's open create of the same size) could have made it; otherwise None, and the
    candidates are recorded as possible orphans.
    """
    clock = client.server_clock
    if shard.windows and not clock.known:
        client.list_page(limit=1)  # the server's time, to read unclocked windows
    windows = [w.on_server_clock(clock.offset) for w in shard.windows if not w.rejected]
    if windows:
        since = min(w.opened for w in windows) - MARGIN

        def made_here(batch: MessageBatch) -> bool:
            return any(w.contains(batch.created_at) for w in windows)
    elif shard.intents:  # a ledger from before windows: the old, looser rule
        since = min(shard.intents) - clock_skew

        def made_here(batch: MessageBatch) -> bool:
            return True
    else:
        return None
    claimed = {s.batch_id for s in ledger.shards if s.batch_id}
    if registry is not None:
        claimed |= registry.claimed(since=since)
    candidates: list[MessageBatch] = []
    for batch in client.list(limit=100):
        if batch.created_at < since:
            break
        if (
            batch.id not in claimed
            and batch.request_counts.total == shard.request_count
            and made_here(batch)
        ):
            candidates.append(batch)
    if not candidates:
        return None
    rivals: set[str] = set()
    if registry is not None:
        for batch in candidates:
            for rival in registry.rivals(
                job_id, shard.index, shard.request_count, batch.created_at
            ):
                rivals.add(f"{rival.job_id} shard {rival.shard + 1}")
        # Read the claims again: a rival whose call got its answer after the first read is
        # no longer a rival (its intent names its batch), and its batch is claimed by now
        # (the claim is written before the intent is).
        claimed_now = registry.claimed(since=since)
        candidates = [b for b in candidates if b.id not in claimed_now]
        if not candidates:
            return None
    if len(candidates) == 1 and not rivals:
        return candidates[0]
    log.warning(
        "Shard %d: cannot tell which batch its lost create made: %d unclaimed batch(es) of "
        "%d requests in its create windows (%s)%s. Paying for a new batch rather than "
        "risk taking another call's; the candidates are recorded as possible orphans",
        shard.index + 1,
        len(candidates),
        shard.request_count,
        ", ".join(b.id for b in candidates),
        f", and other create calls of that size were open then ({', '.join(sorted(rivals))})"
        if rivals
        else "",
    )
    if registry is not None:
        registry.note_orphans(candidates, job_id)
    return None

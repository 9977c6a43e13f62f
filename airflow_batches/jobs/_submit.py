"""Submit a prepared job exactly once, across task retries and worker crashes.

See ``_ledger`` for the write-ahead protocol. The one window it cannot close: a create that
the API accepted but had not yet made visible in the batch list when the retry looked (the
retry would then create a second batch). Airflow's retry delay (minutes) makes this window
practically empty; it is documented in docs/idempotency.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from airflow_batches.api import (
    APIConnectionError,
    APIStatusError,
    Client,
    MessageBatch,
    RateLimitError,
    RetryPolicy,
    retry_delay,
)
from airflow_batches.jobs._ledger import Ledger, ShardRecord
from airflow_batches.jobs._prepare import (
    OnInvalid,
    Prepared,
    RequestValidator,
    Shard,
    iter_shard_body,
)
from airflow_batches.jobs._staging import (
    LEDGER_FILE,
    REJECTED_FILE,
    REQUESTS_FILE,
    FileLedger,
    LedgerBackend,
    MemoryLedger,
    descriptor_from_ledger,
    job_key,
    new_ledger,
    stage_requests,
    utcnow,
)
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs._wait import is_transient

__all__ = [
    "LEDGER_FILE",
    "REJECTED_FILE",
    "REQUESTS_FILE",
    "FileLedger",
    "JobSubmitter",
    "LedgerBackend",
    "MemoryLedger",
    "Submission",
    "descriptor_from_ledger",
    "job_key",
    "new_ledger",
    "stage_requests",
    "submit_job",
]

log = logging.getLogger(__name__)
MAX_INTENTS = 10


def _asked(exc: Exception) -> dict[str, str] | None:
    """The server's requested wait, as the header the retry policy reads."""
    retry_after = getattr(exc, "retry_after", None)
    return {"retry-after": str(retry_after)} if retry_after else None


class JobSubmitter:
    """Create the batches of a ledger that have none yet; never create one twice.

    :param client: a client; its own retries are switched off for create calls, because a
        create retried blindly after a lost answer is a batch paid twice.
    :param create_attempts: create calls per shard before giving up; between two attempts the
        workspace's batches are searched for the one the failed call may have created.
    :param max_rate_limit_wait: seconds a shard may wait out 429s (rate limit, full queue)
        before the task fails; those answers created nothing, so they cost no attempt.
    :param clock_skew: how much earlier than our intent a batch's ``created_at`` may be and
        still count as ours (the API's clock and ours differ).
    """

    def __init__(
        self,
        client: Client,
        backend: LedgerBackend,
        open_requests: Callable[[], IO[bytes]],
        *,
        create_attempts: int = 4,
        max_rate_limit_wait: float = 1800.0,
        retry_policy: RetryPolicy | None = None,
        clock_skew: timedelta = timedelta(minutes=2),
        extra_headers: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        logger: Any = None,
    ) -> None:
        self.client = client
        self.backend = backend
        self.open_requests = open_requests
        self.create_attempts = max(1, create_attempts)
        self.max_rate_limit_wait = max_rate_limit_wait
        self.retry_policy = retry_policy or client.settings.retry
        self.clock_skew = clock_skew
        self.extra_headers = dict(extra_headers or {})
        self.clock = clock
        self.sleep = sleep
        self.log = logger or log

    def submit(self, ledger: Ledger) -> Ledger:
        """Bring every shard of ``ledger`` to a batch id, saving progress after each step."""
        total = len(ledger.shards)
        for shard in ledger.shards:
            if shard.batch_id:
                self.log.info(
                    "Shard %d/%d: re-attached to batch %s (%d requests)",
                    shard.index + 1,
                    total,
                    shard.batch_id,
                    shard.request_count,
                )
                continue
            if shard.intents:
                orphan = self.find_orphan(ledger, shard)
                if orphan is not None:
                    self._record(ledger, shard, orphan, adopted=True)
                    continue
            self._create(ledger, shard, total)
        return ledger

    def _create(self, ledger: Ledger, shard: ShardRecord, total: int) -> None:
        planned = Shard(shard.index, 0, shard.request_count, shard.offset, shard.length)

        def body() -> Iterable[bytes]:
            return iter_shard_body(self.open_requests, planned)

        attempt = 0
        limited = 0
        limited_for = 0.0
        while True:
            shard.intents.append(self.clock())
            if len(shard.intents) > MAX_INTENTS:  # only the first one is ever read back
                del shard.intents[1:-1]
            self.backend.save(ledger)
            self.log.info(
                "Shard %d/%d: creating a batch of %d requests (%.1f MB)%s",
                shard.index + 1,
                total,
                shard.request_count,
                shard.body_bytes / 1e6,
                f", attempt {attempt + 1}" if attempt else "",
            )
            try:
                batch = self.client.create_from_body(
                    body,
                    content_length=shard.body_bytes,
                    extra_headers=self.extra_headers,
                    max_retries=0,
                )
            except RateLimitError as exc:
                # Rejected, not created: a rate limit or a full queue. Wait for room within
                # the budget without spending create attempts or searching for an orphan.
                if limited_for >= self.max_rate_limit_wait:
                    raise
                wait = retry_delay(min(limited, 6), _asked(exc), self.retry_policy)
                self.log.warning(
                    "Shard %d/%d: %s; waiting %.1fs for room (%.0fs of %.0fs spent)",
                    shard.index + 1,
                    total,
                    exc,
                    wait,
                    limited_for,
                    self.max_rate_limit_wait,
                )
                self.sleep(wait)
                limited += 1
                limited_for += wait
                continue
            except (APIStatusError, APIConnectionError) as exc:
                retryable = is_transient(exc, now=0.0, not_found_grace_until=None)
                if not retryable or attempt + 1 >= self.create_attempts:
                    raise
                wait = retry_delay(attempt, _asked(exc), self.retry_policy)
                self.log.warning(
                    "Shard %d/%d: create failed (%s); looking for a batch it may have "
                    "created, then retrying in %.1fs",
                    shard.index + 1,
                    total,
                    exc,
                    wait,
                )
                self.sleep(wait)
                orphan = self.find_orphan(ledger, shard)
                if orphan is not None:
                    self._record(ledger, shard, orphan, adopted=True)
                    return
                attempt += 1
                continue
            self._record(ledger, shard, batch, adopted=False)
            return

    def _record(
        self, ledger: Ledger, shard: ShardRecord, batch: MessageBatch, *, adopted: bool
    ) -> None:
        shard.batch_id = batch.id
        shard.created_at = batch.created_at
        shard.expires_at = batch.expires_at
        shard.adopted = adopted
        self.backend.save(ledger)
        if adopted:
            self.log.warning(
                "Shard %d: adopted batch %s (created %s, %d requests): a create whose answer "
                "was lost had made it; no new batch was created",
                shard.index + 1,
                batch.id,
                batch.created_at.isoformat(),
                batch.request_counts.total,
            )
        else:
            self.log.info(
                "Shard %d: created batch %s (expires %s)",
                shard.index + 1,
                batch.id,
                batch.expires_at.isoformat(),
            )

    def find_orphan(self, ledger: Ledger, shard: ShardRecord) -> MessageBatch | None:
        """A batch this shard's earlier create call made, if the workspace shows one.

        Candidates: created no earlier than the first intent (minus the clock skew), with the
        shard's request count, and not already claimed by another shard of the job. The list
        is newest first, so the scan stops at the first older batch.
        """
        if not shard.intents:
            return None
        since = min(shard.intents) - self.clock_skew
        claimed = {s.batch_id for s in ledger.shards if s.batch_id}
        candidates: list[MessageBatch] = []
        for batch in self.client.list(limit=100):
            if batch.created_at < since:
                break
            if batch.id in claimed:
                continue
            if batch.request_counts.total == shard.request_count:
                candidates.append(batch)
        if not candidates:
            return None
        candidates.sort(key=lambda b: b.created_at)
        if len(candidates) > 1:
            self.log.warning(
                "Shard %d: %d batches of %d requests were created since its first attempt "
                "(%s); adopting the earliest. The others may belong to another job, or be "
                "duplicates from repeated crashes: check them.",
                shard.index + 1,
                len(candidates),
                shard.request_count,
                ", ".join(b.id for b in candidates),
            )
        return candidates[0]


@dataclass
class Submission:
    """A job staged and submitted: its folder, what pre-flight made of it, its ledger."""

    store: JobStore
    prepared: Prepared
    ledger: Ledger


def submit_job(
    records: Iterable[tuple[str, Any]],
    validator: RequestValidator,
    *,
    root: JobStore,
    client: Client,
    backend_for: Callable[[Prepared, JobStore], LedgerBackend],
    on_invalid: OnInvalid = "fail",
    attempt: int = 1,
    on_staged: Callable[[JobStore, Prepared], None] | None = None,
    logger: Any = None,
    **submitter: Any,
) -> Submission:
    """Validate and stage ``records`` under ``root``, then create the batches of the ledger.

    The one sequence every submission takes, the job's own and its follow-ups: stage (a retry
    with the same input finds the same folder), load or start the ledger (``backend_for``
    says where it lives), create what has no batch yet. ``on_staged`` runs after pre-flight
    and before any create call (a place to log, to estimate, or to refuse).
    """
    logger = logger or log
    store, prepared = stage_requests(root, records, validator, on_invalid=on_invalid)
    if on_staged is not None:
        on_staged(store, prepared)
    backend = backend_for(prepared, store)
    ledger = backend.load()
    if ledger is None:
        ledger = new_ledger(
            prepared, anthropic_version=validator.anthropic_version, attempt=attempt
        )
    else:
        logger.info(
            "Found this job's ledger from an earlier try: %d/%d batch(es) already created; "
            "re-attaching",
            sum(1 for s in ledger.shards if s.batch_id),
            len(ledger.shards),
        )
    opener = store.path(REQUESTS_FILE)
    JobSubmitter(client, backend, lambda: opener.open("rb"), logger=logger, **submitter).submit(
        ledger
    )
    return Submission(store, prepared, ledger)

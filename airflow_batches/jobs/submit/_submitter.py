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
from datetime import timedelta
from typing import IO, Any

from airflow_batches.api import (
    APIConnectionError,
    APIStatusError,
    BatchesError,
    Client,
    MessageBatch,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    retry_delay,
)
from airflow_batches.api._retry import is_transient
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.cache import CacheStep
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    OnInvalid,
    Parts,
    Prepared,
    RequestValidator,
    Shard,
    SidecarWriter,
    Staged,
    iter_shard_body,
    stage_requests,
)
from airflow_batches.jobs.submit._adopt import find_orphan
from airflow_batches.jobs.submit._ledger import (
    Ledger,
    LedgerBackend,
    ShardRecord,
    new_ledger,
)
from airflow_batches.jobs.submit._registry import Claim, Registry
from airflow_batches.jobs.submit._windows import CreateWindows

__all__ = ["JobSubmitter", "Submission", "submit_job"]

log = logging.getLogger(__name__)


def _asked(exc: Exception) -> dict[str, str] | None:
    """The server's requested wait, as the header the retry policy reads."""
    retry_after = getattr(exc, "retry_after", None)
    return {"retry-after": str(retry_after)} if retry_after else None


class JobSubmitter:
    """Create the batches of a ledger that have none yet; never create one twice, never
    take another job's batch for this one's.

    Each create call is first written down as a *window* on the server's clock (the ``Date``
    of the API's answers): when it was sent, when its failure was seen, and the latest its
    batch can have been made (the call's timeout). After a failure that may have created a
    batch (a lost answer, a 5xx, a crash), the workspace's batches are searched for one that
    this shard's calls made: the right request count, created within one of its windows, not
    claimed by any job in the shared ``registry``, and with no other job's call of that size
    open at that time. Exactly one such batch is adopted; several, or a rival call, make the
    case ambiguous: a new batch is paid for and the candidates are recorded as possible
    orphans (``_registry``).

    :param client: a client; its own retries are switched off for create calls, because a
        create retried blindly after a lost answer is a batch paid twice.
    :param create_attempts: create calls per shard before giving up; between two attempts the
        workspace's batches are searched for the one the failed call may have created.
    :param max_rate_limit_wait: seconds a shard may wait out 429s (rate limit, full queue)
        before the task fails; those answers created nothing, so they cost no attempt.
    :param clock_skew: for ledgers written before windows existed: how much earlier than the
        first intent a batch may have been created and still count.
    :param registry: the deployment's registry of claims and open calls (None: this job's
        ledger is all that is known, and only an unambiguous single candidate is adopted).
    :param job_id: how this job is named in the registry.
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
        registry: Registry | None = None,
        job_id: str = "",
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
        self.registry = registry
        self.job_id = job_id
        self.sleep = sleep
        self.log = logger or log
        self.windows = CreateWindows(client, backend, registry=registry, job_id=job_id)

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
            if shard.intents or shard.windows:
                self.windows.close_dead(ledger, shard)
                orphan = self.find_orphan(ledger, shard)
                if orphan is not None:
                    self._record(ledger, shard, orphan, adopted=True)
                    continue
            self._create(ledger, shard, total)
        if self.registry is not None:
            try:
                canceled = self.registry.settle(self.client, self.client.server_clock.now())
            except (BatchesError, OSError) as exc:
                self.log.warning("Could not settle possible orphans: %s", exc)
            else:
                if canceled:
                    self.log.warning(
                        "Canceled %d batch(es) that no job owns (orphans of lost create "
                        "answers): %s",
                        len(canceled),
                        ", ".join(canceled),
                    )
        return ledger

    def _create(self, ledger: Ledger, shard: ShardRecord, total: int) -> None:
        planned = Shard(shard.index, 0, shard.request_count, shard.offset, shard.length)

        def body() -> Iterable[bytes]:
            return iter_shard_body(self.open_requests, planned)

        attempt = 0
        limited = 0
        limited_for = 0.0
        while True:
            window = self.windows.open(ledger, shard)
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
                self.windows.failed(ledger, shard, window, rejected=True)
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
            except ResponseValidationError:
                # A 2xx answer we refuse (a batch id of the wrong shape, say): the call may
                # have made a batch, so its window is closed as a lost answer's is; the task
                # fails with the error naming what was refused, nothing else written.
                self.windows.failed(ledger, shard, window, rejected=False)
                raise
            except (APIStatusError, APIConnectionError) as exc:
                self.windows.failed(ledger, shard, window, rejected=False)
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
        if self.registry is not None:
            claim = Claim(
                batch_id=batch.id,
                job_id=self.job_id,
                shard=shard.index,
                adopted=adopted,
                created_at=batch.created_at,
            )
            made_by = None if adopted or not shard.windows else shard.windows[-1].token
            self.registry.claim(claim, tokens=[w.token for w in shard.windows], made_by=made_by)
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
        """The batch this shard's earlier create call made, if it can be told apart
        (``_adopt.find_orphan``)."""
        return find_orphan(
            self.client,
            ledger,
            shard,
            registry=self.registry,
            job_id=self.job_id,
            clock_skew=self.clock_skew,
            log=self.log,
        )


@dataclass
class Submission:
    """A job staged and submitted: its folder, what pre-flight made of it, its ledger (None
    when nothing had to be sent: every request was answered from the cross-run cache)."""

    store: JobStore
    prepared: Prepared
    ledger: Ledger | None
    staged: Staged | None = None


def submit_job(
    records: Iterable[tuple[str, Any]] | Parts,
    validator: RequestValidator,
    *,
    root: JobStore,
    client: Client,
    backend_for: Callable[[Prepared, JobStore], LedgerBackend],
    on_invalid: OnInvalid = "fail",
    attempt: int = 1,
    on_staged: Callable[[Staged], None] | None = None,
    logger: Any = None,
    sidecar: SidecarWriter | None = None,
    cache: CacheStep | None = None,
    **submitter: Any,
) -> Submission:
    """Validate and stage ``records`` under ``root``, then create the batches of the ledger.

    The one sequence every submission takes, the job's own and its follow-ups: stage (a retry
    with the same input finds the same folder), load or start the ledger (``backend_for``
    says where it lives), create what has no batch yet. With a ``cache`` (``jobs.cache``), only
    the requests it cannot answer are sent. ``on_staged`` runs after pre-flight and before
    any create call (a place to log, to estimate, or to refuse).
    """
    logger = logger or log
    digest, staged = (
        cache.recall(root, records, validator, on_invalid, sidecar, logger)
        if cache is not None
        else (None, None)
    )
    if staged is None:
        store, prepared = stage_requests(
            root, records, validator, on_invalid=on_invalid, sidecar=sidecar
        )
        staged = Staged(store, prepared)
        if cache is not None and digest is not None:
            cache.remember(digest, staged, sidecar)
    store, prepared = staged.store, staged.prepared
    if cache is not None:
        staged = cache.stage(staged, logger)
    if on_staged is not None:
        on_staged(staged)
    if staged.sent is None:
        return Submission(store, prepared, None, staged)
    sent, sent_store = staged.sent, staged.sent_store or store
    backend = backend_for(sent, sent_store)
    ledger = backend.load()
    if ledger is None:
        ledger = new_ledger(sent, anthropic_version=validator.anthropic_version, attempt=attempt)
    else:
        logger.info(
            "Found this job's ledger from an earlier try: %d/%d batch(es) already created; "
            "re-attaching",
            sum(1 for s in ledger.shards if s.batch_id),
            len(ledger.shards),
        )
    opener = store.path(staged.sent_file or REQUESTS_FILE)
    JobSubmitter(client, backend, lambda: opener.open("rb"), logger=logger, **submitter).submit(
        ledger
    )
    return Submission(store, prepared, ledger, staged)

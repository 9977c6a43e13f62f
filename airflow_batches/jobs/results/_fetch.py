"""Fetching a job's results: one line per request, whatever the number of attempts.

A job's requests may have been sent more than once: attempt 1 is the job itself, attempt
``k + 1`` resends the retryable failures of attempt ``k``. The final results hold exactly one
line per custom_id, from its last attempt. :class:`FetchWorkflow` plans the attempts
(resending failures through :func:`~airflow_batches.jobs.submit.submit_job`, the sequence
the submit operator uses), says when it must wait for batches it created, and publishes the
results with their manifest, reading every batch through one download path (``_download``,
then the line checks of ``_checks``).

A batch whose results are not the job's own requests (a batch adopted after a lost create
answer that turned out to be another job's) is never published: the job's own requests of
that batch are sent again as its replacement, and the fetch waits for that one instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from airflow_batches.api import BatchesError, Client, MessageBatch
from airflow_batches.api._pricing import PriceTable
from airflow_batches.jobs._descriptor import BatchInfo, JobDescriptor, job_key
from airflow_batches.jobs._store import JobStore, StoragePath, fresh
from airflow_batches.jobs.cache import CrossRunCache
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Limits,
    ModelMatrix,
    Parts,
    RequestValidator,
    select_range,
    select_requests,
)
from airflow_batches.jobs.results._attempts import (
    Attempt,
    FetchOptions,
    FetchState,
    NotEndedError,
    WaitFor,
)
from airflow_batches.jobs.results._checks import (
    RETRYABLE_ERROR_TYPES,
    ForeignResultsError,
    IncompleteResultsError,
    Reader,
    collect_resubmittable,
)
from airflow_batches.jobs.results._download import DownloadPolicy, ResultsChangedError
from airflow_batches.jobs.results._join import cached_lines_of, job_join
from airflow_batches.jobs.results._manifest import MANIFEST_FILE
from airflow_batches.jobs.results._publish import Published, Publisher
from airflow_batches.jobs.submit import LedgerBackend, batch_infos, submit_job

__all__ = [
    "MANIFEST_FILE",
    "RETRYABLE_ERROR_TYPES",
    "Attempt",
    "FetchOptions",
    "FetchState",
    "FetchWorkflow",
    "IncompleteResultsError",
    "NotEndedError",
    "Published",
    "WaitFor",
]

PUBLISH_TRIES = 3


@dataclass
class FetchWorkflow:
    """Plans and publishes one job's fetch; every side effect goes through its arguments.

    :param staged: the job's folder on shared storage, or None (no resending possible).
    :param ledger_for: where the ledger of a follow-up or replacement with this key lives.
    :param save_state: called whenever the attempts change (a task retry resumes from it).
    """

    job: JobDescriptor
    state: FetchState
    client: Client
    prices: PriceTable
    log: Any
    options: FetchOptions = field(default_factory=FetchOptions)
    staged: JobStore | None = None
    ledger_for: Callable[[str], LedgerBackend] | None = None
    save_state: Callable[[FetchState], None] = lambda state: None
    download: DownloadPolicy = field(default_factory=DownloadPolicy)
    submitter: Mapping[str, Any] = field(default_factory=dict)
    known: dict[str, MessageBatch] = field(default_factory=dict)
    cache: CrossRunCache | None = None
    """The job's cross-run cache (``job.cache``), opened on its storage: it receives the
    succeeded results of the requests it could not answer."""

    def reader(self) -> Reader:
        return Reader(self.client, self.log, self.download, job_id=self.job.job_id)

    # -- planning --------------------------------------------------------------------------

    def next_wait(self) -> WaitFor | None:
        """Resend failures and replace foreign batches until a wait is due or all is read."""
        while True:
            latest = self.state.latest
            pending = self._pending()
            if pending:
                own = [i for i in pending if i in self.job.batch_ids]
                if own:
                    shown = ", ".join(f"{i} ({self.known[i].processing_status})" for i in own)
                    raise NotEndedError(
                        f"batch(es) not ended yet: {shown}; results exist only once a batch "
                        "has ended (put a BatchSensor before this task)"
                    )
                return WaitFor(pending, latest.number)
            o = self.options
            if not o.resubmit_failed or self.staged is None or latest.number >= o.max_attempts:
                return None
            try:
                ids, reasons = collect_resubmittable(
                    self.reader(), latest, self.known, o.retry_error_types
                )
            except ForeignResultsError as exc:
                self.replace(exc)
                continue
            if not ids:
                return None
            self.log.warning(
                "Attempt %d: resending %d request(s) (%s) as attempt %d of %d",
                latest.number,
                len(ids),
                ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())),
                latest.number + 1,
                o.max_attempts,
            )
            latest.resubmitted_next = reasons
            number = latest.number + 1
            batches = self._send(
                [functools.partial(select_requests, custom_ids=part) for part in self._parts(ids)],
                REQUESTS_FILE,
                key=f"followup.{number}",
                attempt=number,
                folder=f"attempt-{number}",
            )
            self.state.attempts.append(Attempt(number=number, batches=batches))
            self.save_state(self.state)

    def _pending(self) -> list[str]:
        """The batches of every attempt not known to have ended (each retrieved afresh)."""
        pending = []
        for attempt in self.state.attempts:
            for info in attempt.batches:
                known = self.known.get(info.id)
                if known is None or not known.is_ended:
                    self.known[info.id] = known = self.client.retrieve(info.id)
                if not known.is_ended:
                    pending.append(info.id)
        return pending

    def replace(self, exc: ForeignResultsError) -> None:
        """Send again the job's own requests of a batch whose results are not the job's."""
        if self.staged is None:
            raise exc
        attempt, info = self._find(exc.batch_id)
        self.log.error(
            "%s. Job %s: sending the %d request(s) of that batch again as a new batch; the "
            "batch %s is left alone (it belongs to someone else, or to nobody)",
            exc,
            self.job.job_id,
            info.request_count,
            info.id,
        )
        new = self._send(
            [functools.partial(select_range, first=info.first, count=info.request_count)],
            info.requests_file or REQUESTS_FILE,
            key=f"replace.{info.id}",
            attempt=attempt.number,
            folder=f"replace-{info.id}",
        )
        at = attempt.batches.index(info)
        attempt.batches[at : at + 1] = new
        attempt.replaced.append(info.id)
        self.save_state(self.state)

    def _find(self, batch_id: str) -> tuple[Attempt, BatchInfo]:
        for attempt in self.state.attempts:
            for info in attempt.batches:
                if info.id == batch_id:
                    return attempt, info
        raise KeyError(batch_id)

    def _parts(self, ids: set[str]) -> list[set[str]]:
        """The custom_ids to resend, one part per matrix model in the matrix's order (a
        batch never mixes two models, follow-ups included), or one part."""
        if not self.job.matrix:
            return [ids]
        matrix = ModelMatrix.from_json(self.job.matrix)
        parts: dict[str, set[str]] = {m.prefix: set() for m in matrix.models}
        for custom_id in ids:
            parts.setdefault(matrix.part_of(custom_id), set()).add(custom_id)
        return [part for part in parts.values() if part]

    def _send(
        self,
        selects: Sequence[Callable[[IO[bytes]], Iterator[tuple[str, bytes]]]],
        source_name: str,
        *,
        key: str,
        attempt: int,
        folder: str,
    ) -> list[BatchInfo]:
        assert self.staged is not None and self.ledger_for is not None
        source = self.staged.path(source_name)
        if not fresh(source).exists():
            raise BatchesError(
                f"the submitted requests are not at {source}: cannot resend them (is "
                "staging_path shared storage that every worker can read?)"
            )
        job = self.job
        validator = RequestValidator(
            anthropic_version=job.anthropic_version,
            limits=Limits(
                job.max_requests_per_batch or Limits.max_requests,
                job.max_bytes_per_batch or Limits.max_bytes,
            ),
        )
        root = self.staged.sub(folder)
        ledger_for = self.ledger_for

        def backend(prepared: Any, store: JobStore) -> LedgerBackend:
            return ledger_for(f"{key}.{job_key(prepared.fingerprint)}")

        parts = [_Selection(source, select) for select in selects]
        done = submit_job(
            Parts(parts) if len(parts) > 1 else parts[0],
            validator,
            root=root,
            client=self.client,
            backend_for=backend,
            attempt=attempt,
            logger=self.log,
            **self.submitter,
        )
        assert done.ledger is not None  # no cache here: whatever was staged was sent
        staged_as = f"{folder}/{job_key(done.prepared.fingerprint)}/{REQUESTS_FILE}"
        return batch_infos(done.ledger, staged_as)

    # -- publishing ------------------------------------------------------------------------

    def _publisher(self) -> Publisher:
        return Publisher(
            self.job,
            self.state.attempts,
            self.known,
            self.reader,
            self.prices,
            self.options,
            self.log,
            join=functools.partial(job_join, self.job, self.staged, self.prices, self.cache),
            cached_lines=cached_lines_of(self.job, self.staged),
        )

    def check_destination(self, destination: StoragePath, **kwargs: Any) -> None:
        """Refuse, before anything is resent, a destination the publish would refuse
        (``Publisher.guard``; ``kwargs`` go to ``_owner.check_destination``)."""
        self._publisher().guard(destination, **kwargs)

    def publish(self, destination: StoragePath | None, started_at: datetime) -> WaitFor | Published:
        """Write the final lines and the manifest (or collect them for XCom)."""
        pending = self._pending()
        if pending:
            return WaitFor(pending, self.state.latest.number)
        publisher = self._publisher()
        for tries in range(1, PUBLISH_TRIES + 1):
            try:
                return publisher.publish(destination, started_at)
            except ForeignResultsError as exc:
                self.replace(exc)
                return WaitFor(self._pending(), self.state.latest.number)
            except ResultsChangedError as exc:
                if tries == PUBLISH_TRIES:
                    raise
                self.log.warning("%s (%d/%d)", exc, tries + 1, PUBLISH_TRIES)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Selection:
    """Some of the staged request lines, read afresh each time it is iterated."""

    path: StoragePath
    select: Callable[[IO[bytes]], Iterator[tuple[str, bytes]]]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        with self.path.open("rb") as stream:
            yield from self.select(stream)

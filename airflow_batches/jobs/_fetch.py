"""Fetching a job's results: one line per request, whatever the number of attempts.

A job's requests may have been sent more than once: attempt 1 is the job itself, attempt
``k + 1`` resends the retryable failures of attempt ``k``. The final results hold exactly one
line per custom_id, from its last attempt. They are streamed from the API (never held in
memory), newest attempt first: the custom_ids seen in attempt ``k + 1`` are the lines of
attempt ``k`` to leave out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec
from pydantic import BaseModel, ConfigDict

from airflow_batches.api import BatchesError, Client, MessageBatch
from airflow_batches.api._models import RESULT_TYPES, RESULTS_RETENTION_DAYS
from airflow_batches.jobs._ledger import BatchInfo, JobDescriptor
from airflow_batches.jobs._scan import ResultRecord, scan_result_line
from airflow_batches.jobs._tally import ResultTally

RETRYABLE_ERROR_TYPES = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)
"""Errored results worth resending as they are. ``invalid_request_error`` never is: the
request must be fixed first. Authentication, permission, billing and not-found errors would
fail again the same way."""

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class IncompleteResultsError(BatchesError):
    """The lines fetched do not match the requests submitted; nothing was published."""


class XComTooLargeError(BatchesError):
    """The results do not fit the XCom size limit."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Attempt(_Model):
    number: int
    batches: list[BatchInfo]
    resubmitted_next: dict[str, int] = {}
    """Requests of this attempt resent in the next one, by reason (error type or expired)."""


class FetchState(_Model):
    """The attempts of a job, kept between deferrals and task tries."""

    job_id: str
    attempts: list[Attempt]

    @property
    def latest(self) -> Attempt:
        return self.attempts[-1]


def should_resubmit(record: ResultRecord, error_types: frozenset[str]) -> bool:
    if record.result_type == "expired":
        return True
    return record.result_type == "errored" and (record.error_type or "") in error_types


Known = Mapping[str, MessageBatch]
"""Batches already retrieved, by id: their results are opened without asking again."""


def iter_batch_lines(
    client: Client, batch: str | MessageBatch
) -> Iterator[tuple[int, bytes, ResultRecord]]:
    """(line number, raw line, scanned record) for every result line of one batch."""
    batch_id = batch if isinstance(batch, str) else batch.id
    with client.stream_results(batch) as stream:
        for number, line in enumerate(stream.iter_lines(), start=1):
            yield number, line, scan_result_line(line, batch_id=batch_id, line_number=number)


def collect_resubmittable(
    client: Client, attempt: Attempt, error_types: frozenset[str], known: Known | None = None
) -> tuple[set[str], dict[str, int]]:
    """custom_ids of the attempt's results worth resending, and their count by reason."""
    ids: set[str] = set()
    reasons: dict[str, int] = {}
    for info in attempt.batches:
        for _, _, record in iter_batch_lines(client, (known or {}).get(info.id, info.id)):
            if should_resubmit(record, error_types):
                ids.add(record.custom_id)
                reason = record.error_type or record.result_type
                reasons[reason] = reasons.get(reason, 0) + 1
    return ids, reasons


class _CustomId(msgspec.Struct):
    custom_id: str


_decode_custom_id = msgspec.json.Decoder(_CustomId).decode


def select_requests(stream: IO[bytes], custom_ids: set[str]) -> Iterator[tuple[str, bytes]]:
    """The staged request lines whose custom_id is in ``custom_ids``."""
    for number, line in enumerate(stream, start=1):
        if line.strip() and _decode_custom_id(line).custom_id in custom_ids:
            yield f"line {number}", line


LineSink = Callable[[ResultRecord, bytes], None]


def stream_final_lines(
    client: Client, attempts: Sequence[Attempt], sink: LineSink, known: Known | None = None
) -> dict[str, int]:
    """Feed ``sink`` the last-attempt line of every request; check nothing is missing.

    Raises ``IncompleteResultsError`` when a batch returns a number of lines other than its
    request count, or the same custom_id twice.
    """
    later_ids: set[str] = set()
    superseded = 0
    lines = 0
    for attempt in reversed(attempts):
        this_ids: set[str] = set()
        for info in attempt.batches:
            seen: set[int] = set()
            count = 0
            batch = (known or {}).get(info.id, info.id)
            for count, line, record in iter_batch_lines(client, batch):  # noqa: B007
                key = hash(record.custom_id)
                if key in seen:
                    raise IncompleteResultsError(
                        f"batch {info.id} returned custom_id {record.custom_id!r} twice"
                    )
                seen.add(key)
                if attempt.number > 1:
                    this_ids.add(record.custom_id)
                if record.custom_id in later_ids:
                    superseded += 1
                    continue
                lines += 1
                sink(record, line)
            if count != info.request_count:
                raise IncompleteResultsError(
                    f"batch {info.id} returned {count} result line(s) for "
                    f"{info.request_count} request(s); nothing was published"
                )
        later_ids = this_ids
    return {"lines": lines, "superseded": superseded}


class XComCollector:
    """Collects parsed result lines for XCom, within a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.items: list[Any] = []

    def __call__(self, record: ResultRecord, line: bytes) -> None:
        self.size += len(line) + 1
        if self.size > self.max_bytes:
            raise XComTooLargeError(
                f"the results exceed the XCom limit of {self.max_bytes:,} bytes (max_xcom_bytes);"
                " give FetchResultsOperator a destination= to write them to object storage"
            )
        self.items.append(json.loads(line))


class FileSinks:
    """Writes lines to one results file, or one per result type, through open streams."""

    def __init__(self, streams: dict[str, IO[bytes]], *, split_by_type: bool) -> None:
        self.streams = streams
        self.split_by_type = split_by_type

    def __call__(self, record: ResultRecord, line: bytes) -> None:
        key = record.result_type if self.split_by_type else "results"
        stream = self.streams[key]
        stream.write(line)
        stream.write(b"\n")


def file_names(split_by_type: bool) -> dict[str, str]:
    if split_by_type:
        return {kind: f"{kind}.jsonl" for kind in RESULT_TYPES}
    return {"results": RESULTS_FILE}


def retention_deadline(batches: Iterable[BatchInfo]) -> datetime | None:
    """When the first of these batches' results disappear (29 days after creation)."""
    created = [b.created_at for b in batches if b.created_at]
    return min(created) + timedelta(days=RESULTS_RETENTION_DAYS) if created else None


def build_manifest(
    *,
    job: JobDescriptor,
    state: FetchState,
    tally: ResultTally,
    stats: dict[str, int],
    files: dict[str, str],
    started_at: datetime,
    ended_at: dict[str, str | None],
) -> dict[str, Any]:
    """The manifest: what was fetched, what it cost, where it is."""
    now = datetime.now(UTC)
    all_batches = [b for a in state.attempts for b in a.batches]
    ends = [v for v in ended_at.values() if v]
    deadline = retention_deadline(all_batches)
    summary = tally.to_dict()
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job.job_id,
        "fingerprint": job.fingerprint,
        "anthropic_version": job.anthropic_version,
        "complete": stats["lines"] == job.request_count,
        "request_count": job.request_count,
        "rejected_count": job.rejected_count,
        "lines": stats["lines"],
        "counts": summary["counts"],
        "errors_by_type": summary["error_counts"],
        "usage_by_model": summary["models"],
        "cost_usd": summary["cost_usd"],
        "standard_cost_usd": summary["standard_cost_usd"],
        "saving_usd": summary["saving_usd"],
        "cost_complete": summary["cost_complete"],
        "unpriced_models": summary["unpriced_models"],
        "cost_warnings": summary["cost_warnings"],
        "cache_hit_rate": summary["cache_hit_rate"],
        "batch_ids": [b.id for b in all_batches],
        "attempts": [
            {
                "attempt": a.number,
                "batches": [
                    {
                        "id": b.id,
                        "request_count": b.request_count,
                        "created_at": b.created_at.isoformat() if b.created_at else None,
                        "ended_at": ended_at.get(b.id),
                    }
                    for b in a.batches
                ],
                "resubmitted_next": a.resubmitted_next,
            }
            for a in state.attempts
        ],
        "superseded_lines": stats["superseded"],
        "timings": {
            "submitted_at": job.submitted_at.isoformat(),
            "last_ended_at": max(ends) if ends else None,
            "fetch_started_at": started_at.isoformat(),
            "fetched_at": now.isoformat(),
            "fetch_seconds": round((now - started_at).total_seconds(), 3),
        },
        "results_available_until": deadline.isoformat() if deadline else None,
        "files": files,
    }

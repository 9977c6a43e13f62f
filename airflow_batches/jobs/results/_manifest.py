"""The manifest: what was fetched, what it cost, where it is (``manifest.json``).

A typed model whose JSON is the file users read; fields keep their order and names across
releases (new ones are added, none renamed). Reading an existing manifest (to guard a
destination) tolerates fields this version does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_batches.api._models import RESULT_TYPES, RESULTS_RETENTION_DAYS, MessageBatch
from airflow_batches.jobs._descriptor import BatchInfo, JobDescriptor
from airflow_batches.jobs.results._checks import OTHER, ReadStats
from airflow_batches.jobs.results._totals import ResultTally

if TYPE_CHECKING:
    from airflow_batches.jobs.results._join import ResultJoin

MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.jsonl"
MANIFEST_VERSION = 1


class RunRef(BaseModel):
    """A task of a DAG run: who claims a destination, recorded in the claim and manifest."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    dag_id: str
    run_id: str
    task_id: str = ""
    map_index: int = -1

    def same_run(self, other: RunRef) -> bool:
        return (self.dag_id, self.run_id) == (other.dag_id, other.run_id)

    def same_task(self, other: RunRef) -> bool:
        """The same task of the same run (an empty task id matches any task)."""
        if not self.same_run(other):
            return False
        if not self.task_id or not other.task_id:
            return True
        return (self.task_id, self.map_index) == (other.task_id, other.map_index)

    def __str__(self) -> str:
        task = f", task_id={self.task_id!r}" if self.task_id else ""
        index = f", map_index={self.map_index}" if self.map_index >= 0 else ""
        return f"dag_id={self.dag_id!r}, run_id={self.run_id!r}{task}{index}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class ManifestBatch(_Model):
    id: str
    request_count: int
    created_at: str | None = None
    ended_at: str | None = None


class ManifestAttempt(_Model):
    attempt: int
    batches: list[ManifestBatch]
    resubmitted_next: dict[str, int] = Field(default_factory=dict)
    replaced: list[str] | None = None
    """Batches found not to hold the job's requests and replaced (only when some were)."""


class Timings(_Model):
    submitted_at: str
    last_ended_at: str | None = None
    fetch_started_at: str
    fetched_at: str
    fetch_seconds: float


class LineChecks(_Model):
    """What the line checks kept, skipped or could not cost (see ``_checks``)."""

    replayed_lines: int = 0
    blank_lines: int = 0
    other_lines: int = 0
    lines_without_usage: int = 0
    unknown_types: dict[str, int] = Field(default_factory=dict)


class Manifest(_Model):
    manifest_version: int = MANIFEST_VERSION
    job_id: str
    fingerprint: str
    anthropic_version: str
    complete: bool
    request_count: int
    rejected_count: int = 0
    lines: int
    counts: dict[str, int]
    errors_by_type: dict[str, int]
    usage_by_model: dict[str, Any]
    cost_usd: float
    """Billed, at batch prices."""
    standard_cost_usd: float = 0.0
    """The same usage at standard (non-batch) prices."""
    saving_usd: float = 0.0
    cost_complete: bool
    unpriced_models: list[str]
    cost_warnings: list[str] = Field(default_factory=list)
    cache_hit_rate: float | None
    prices_digest: str | None = None
    """The price table the costs were computed with (``PriceTable.digest``): an evaluation
    priced with the same table takes the ``matrix`` section's costs instead of counting them
    again."""
    batch_ids: list[str]
    attempts: list[ManifestAttempt]
    superseded_lines: int
    timings: Timings
    results_available_until: str | None
    files: dict[str, str]
    destination: str | None = None
    line_checks: LineChecks | None = None
    """Only when a check found something (replays, blank lines, unknown types, no usage)."""
    matrix: dict[str, Any] | None = None
    """A model-matrix job: per model label, its counts, usage, cost, prompt-cache hit rate,
    batches, time to end and cross-run cache hits (``_join``)."""
    cache: dict[str, Any] | None = None
    """With a cross-run cache: hits, misses, results stored, spend avoided (``_join``)."""
    metadata_lines: int | None = None
    """Lines that carry their request's metadata (only for a job whose requests had some)."""
    run: dict[str, Any] | None = None
    """The task run that published it (dag_id, run_id, task_id, map_index; ``_owner``)."""

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in (
            "destination",
            "line_checks",
            "matrix",
            "cache",
            "metadata_lines",
            "run",
            "prices_digest",
        ):
            if data.get(key) is None:
                data.pop(key, None)
        for attempt in data["attempts"]:
            if attempt.get("replaced") is None:
                attempt.pop("replaced", None)
        return data

    @property
    def first_batch_ids(self) -> list[str]:
        return [b.id for b in self.attempts[0].batches] if self.attempts else []


def file_names(split_by_type: bool) -> dict[str, str]:
    if split_by_type:
        return {kind: f"{kind}.jsonl" for kind in RESULT_TYPES}
    return {"results": RESULTS_FILE}


def retention_deadline(batches: Iterable[BatchInfo]) -> datetime | None:
    """When the first of these batches' results disappear (29 days after creation)."""
    created = [b.created_at for b in batches if b.created_at]
    return min(created) + timedelta(days=RESULTS_RETENTION_DAYS) if created else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def build_manifest(
    *,
    job: JobDescriptor,
    attempts: Iterable[Any],
    tally: ResultTally,
    stats: ReadStats,
    known: Mapping[str, MessageBatch],
    files: dict[str, str],
    started_at: datetime,
    destination: str | None = None,
    join: ResultJoin | None = None,
    cache_stored: int = 0,
    run: RunRef | None = None,
) -> Manifest:
    """The manifest of a fetch that read every line of ``attempts`` into ``tally`` (and the
    cross-run cache's lines into ``join``)."""
    now = datetime.now(UTC)
    attempts = list(attempts)
    all_batches = [b for a in attempts for b in a.batches]
    ended = {i: _iso(b.ended_at) for i, b in known.items()}
    ends = [v for v in ended.values() if v]
    deadline = retention_deadline(all_batches)
    summary = tally.to_dict()
    counts = dict(summary["counts"])
    if join is not None and join.cached is not None:
        for kind, n in join.cached.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    if stats.other:
        counts[OTHER] = stats.other
    checks = LineChecks(
        replayed_lines=stats.replayed,
        blank_lines=stats.blank,
        other_lines=stats.other,
        lines_without_usage=stats.usage_missing,
        unknown_types=dict(sorted(stats.unknown_types.items())),
    )
    unpriced = list(summary["unpriced_models"])
    warnings = list(summary["cost_warnings"])
    if stats.usage_missing:
        warnings.append(
            f"{stats.usage_missing} succeeded line(s) carry no usage: their cost is not counted"
        )
    return Manifest(
        job_id=job.job_id,
        fingerprint=job.fingerprint,
        anthropic_version=job.anthropic_version,
        complete=stats.lines == job.request_count,
        request_count=job.request_count,
        rejected_count=job.rejected_count,
        lines=stats.lines,
        counts=counts,
        errors_by_type=summary["error_counts"],
        usage_by_model=summary["models"],
        cost_usd=summary["cost_usd"],
        standard_cost_usd=summary["standard_cost_usd"],
        saving_usd=summary["saving_usd"],
        cost_complete=summary["cost_complete"] and not stats.usage_missing,
        unpriced_models=unpriced,
        cost_warnings=warnings,
        cache_hit_rate=summary["cache_hit_rate"],
        prices_digest=tally.prices.digest(),
        batch_ids=[b.id for b in all_batches],
        attempts=[
            ManifestAttempt(
                attempt=a.number,
                batches=[
                    ManifestBatch(
                        id=b.id,
                        request_count=b.request_count,
                        created_at=_iso(b.created_at),
                        ended_at=ended.get(b.id),
                    )
                    for b in a.batches
                ],
                resubmitted_next=a.resubmitted_next,
                replaced=list(a.replaced) or None,
            )
            for a in attempts
        ],
        superseded_lines=stats.superseded,
        timings=Timings(
            submitted_at=job.submitted_at.isoformat(),
            last_ended_at=max(ends) if ends else None,
            fetch_started_at=started_at.isoformat(),
            fetched_at=now.isoformat(),
            fetch_seconds=round((now - started_at).total_seconds(), 3),
        ),
        results_available_until=_iso(deadline),
        files=files,
        destination=destination,
        line_checks=checks if checks != LineChecks() else None,
        matrix=join.models_summary(known) if join is not None else None,
        cache=join.cache_summary(cache_stored) if join is not None else None,
        metadata_lines=join.metadata_lines if join is not None and job.sidecar_file else None,
        run=run.model_dump(mode="json") if run is not None else None,
    )

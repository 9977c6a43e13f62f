"""Jobs as the page shows them: what the submit recorded, joined to the live listing.

A job is *in flight* from the moment its submit task succeeded until a fetch of the same run
has published its results (the fetch's extra link names the job it fetched). Its batches,
their models and the estimate come from the job descriptor the submit returned (XCom); each
batch's status and request counts from the connection's cached listing (``_listing``). No
request, answer or key is read: the descriptor holds ids, counts and figures only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_batches.jobs import JobDescriptor
from airflow_batches.operators._common import coerce_job
from airflow_batches.ui._listing import Listing
from airflow_batches.ui._records import RETURN_VALUE, TaskRecord

__all__ = [
    "COUNT_STATES",
    "RESULTS_KEPT",
    "BatchView",
    "JobView",
    "Submitted",
    "batch_models",
    "fetched_jobs",
    "job_json",
    "job_models",
    "job_views",
    "oldest_per_connection",
    "submitted_jobs",
]

COUNT_STATES = ("processing", "succeeded", "errored", "canceled", "expired")
RESULTS_KEPT = timedelta(days=29)
"""How long the API keeps a batch's results after its creation."""


@dataclass(frozen=True)
class BatchView:
    id: str
    model: str | None
    request_count: int
    created_at: datetime | None
    expires_at: datetime | None
    status: str
    """``in_progress``, ``canceling``, ``ended``, or ``not listed`` (not in the listing read)."""
    counts: Mapping[str, int] | None = None
    ended_at: datetime | None = None
    url: str | None = None


@dataclass(frozen=True)
class JobView:
    """One job: where it was submitted, its batches, and what it costs."""

    record: TaskRecord
    job_id: str
    conn_id: str
    submitted_at: datetime
    request_count: int
    models: Sequence[str]
    batches: Sequence[BatchView]
    estimate_usd: float | None
    worst_usd: float | None
    fetched: bool = False
    fetch_state: str | None = None
    cost_usd: float | None = None
    """Billed, from the fetch's manifest (known once fetched)."""
    listing_error: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)
    results: Mapping[str, int] | None = None
    """Once fetched: the results by type, from the fetch's manifest (the final word)."""

    @property
    def counts(self) -> dict[str, int]:
        """Requests by state: the fetched results, else over the batches the listing found."""
        total = dict.fromkeys(COUNT_STATES, 0)
        if self.results is not None:
            total.update({k: int(v) for k, v in self.results.items() if k in total})
            return total
        for batch in self.batches:
            for state, n in (batch.counts or {}).items():
                total[state] = total.get(state, 0) + n
        return total

    @property
    def unlisted(self) -> int:
        """Requests in batches the listing did not reach (none once fetched)."""
        if self.results is not None:
            return 0
        return sum(b.request_count for b in self.batches if b.counts is None)

    def age(self, now: datetime) -> timedelta:
        return now - self.submitted_at

    def expires_in(self, now: datetime) -> timedelta | None:
        """Until the first of its unended batches expires; None once every batch ended."""
        open_ = [b.expires_at for b in self.batches if b.status != "ended" and b.expires_at]
        return min(open_) - now if open_ else None

    def results_until(self) -> datetime | None:
        """The first of its batches' results to go (29 days after creation)."""
        created = [b.created_at for b in self.batches if b.created_at]
        return min(created) + RESULTS_KEPT if created else None


def batch_models(job: JobDescriptor) -> dict[str, str]:
    """Each batch's model, as far as the descriptor tells.

    A one-model job's batches are all that model's. A model-matrix job staged its models one
    after the other, each in batches of its own: a batch belongs to the model whose part its
    first request falls in, the parts' sizes being the estimate's requests per model (when
    the matrix's model ids are distinct and the sizes add up to the batches'). Otherwise, a
    batch shows the job's models together.
    """
    estimate = (job.estimate or {}).get("models") or {}
    sizes = {m: int((e or {}).get("requests") or 0) for m, e in estimate.items()}
    if not job.matrix:
        models = list(sizes)
        return {b.id: models[0] for b in job.batches} if len(models) == 1 else {}
    labels = [str(m.get("label") or m.get("model")) for m in job.matrix]
    ids = [str(m.get("model")) for m in job.matrix]
    if len(set(ids)) != len(ids) or any(i not in sizes for i in ids):
        return {}
    if sum(sizes[i] for i in ids) != sum(b.request_count for b in job.batches):
        return {}  # a cross-run cache answered some: the parts no longer line up
    found = {}
    start = 0
    bounds = []
    for label, model_id in zip(labels, ids, strict=True):
        bounds.append((start, start + sizes[model_id], label))
        start += sizes[model_id]
    for batch in job.batches:
        for low, high, label in bounds:
            if low <= batch.first < high:
                found[batch.id] = label
    return found


def job_models(job: JobDescriptor) -> list[str]:
    if job.matrix:
        return [str(m.get("label") or m.get("model")) for m in job.matrix]
    return sorted(((job.estimate or {}).get("models") or {}).keys())


def fetched_jobs(fetches: Iterable[TaskRecord]) -> dict[tuple[str, str, str], TaskRecord]:
    """``(dag_id, run_id, job_id)`` -> the fetch that handled it, from each fetch's link.

    A successful fetch wins over a failed one of the same job (a later task, or a retry).
    """
    found: dict[tuple[str, str, str], TaskRecord] = {}
    for fetch in fetches:
        job = _job_in_link(fetch.mark)
        if job is None:
            continue
        key = (fetch.dag_id, fetch.run_id, job)
        if key not in found or fetch.state == "success":
            found[key] = fetch
    return found


def _job_in_link(link: Any) -> str | None:
    if not isinstance(link, str):
        return None
    values = parse_qs(urlsplit(link).query).get("job")
    return values[0] if values else None


def _manifest(fetch: TaskRecord | None) -> Mapping[str, Any] | None:
    value = fetch.values.get(RETURN_VALUE) if fetch is not None else None
    if isinstance(value, Mapping) and isinstance(value.get("manifest"), Mapping):
        value = value["manifest"]  # results returned in XCom: only the manifest is read
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class Submitted:
    """A successful submit's job, and the fetch of its run that handled it (if any)."""

    record: TaskRecord
    job: JobDescriptor
    fetch: TaskRecord | None

    @property
    def fetched(self) -> bool:
        return self.fetch is not None and self.fetch.state == "success"


def submitted_jobs(
    submits: Iterable[TaskRecord],
    fetches: Mapping[tuple[str, str, str], TaskRecord],
    *,
    include_fetched: bool = False,
) -> list[Submitted]:
    """The jobs of successful submits that sent batches: in flight only (no fetch of their
    run has published them), unless ``include_fetched``."""
    found = []
    for record in submits:
        job = _descriptor(record)
        if job is None or record.state != "success" or not job.batches:
            continue
        item = Submitted(record, job, fetches.get((record.dag_id, record.run_id, job.job_id)))
        if include_fetched or not item.fetched:
            found.append(item)
    return found


def oldest_per_connection(jobs: Iterable[Submitted]) -> dict[str, datetime | None]:
    """Per connection, the creation of its oldest batch asked about (how far to list)."""
    oldest: dict[str, datetime | None] = {}
    for item in jobs:
        created = [b.created_at for b in item.job.batches if b.created_at]
        first = min(created) if created else None
        known = oldest.get(item.job.conn_id)
        if item.job.conn_id not in oldest or (first and (known is None or first < known)):
            oldest[item.job.conn_id] = first
    return oldest


def job_views(jobs: Iterable[Submitted], listings: Mapping[str, Listing]) -> list[JobView]:
    """Each job with its batches' live status where the connection's listing has it, newest
    first."""
    views = []
    for item in jobs:
        job = item.job
        listing = listings.get(job.conn_id) or Listing()
        models = batch_models(job)
        joint = ", ".join(job_models(job)) or None
        manifest = _manifest(item.fetch) if item.fetched else None
        estimate = job.estimate or {}
        views.append(
            JobView(
                record=item.record,
                job_id=job.job_id,
                conn_id=job.conn_id,
                submitted_at=job.submitted_at,
                request_count=job.request_count,
                models=job_models(job),
                batches=[
                    _batch(b, models.get(b.id, joint), listing, fetched=item.fetched)
                    for b in job.batches
                ],
                estimate_usd=_number(estimate.get("expected_usd")),
                worst_usd=_number(estimate.get("worst_usd")),
                fetched=item.fetched,
                fetch_state=item.fetch.state if item.fetch is not None else None,
                cost_usd=_number((manifest or {}).get("cost_usd")),
                results=_results(manifest),
                listing_error=listing.error,
                notes=_notes(job),
            )
        )
    views.sort(key=lambda v: v.submitted_at, reverse=True)
    return views


def _descriptor(record: TaskRecord) -> JobDescriptor | None:
    try:
        return coerce_job(record.values.get(RETURN_VALUE))
    except ValueError:
        return None


def _results(manifest: Mapping[str, Any] | None) -> dict[str, int] | None:
    counts = (manifest or {}).get("counts")
    if not isinstance(counts, Mapping):
        return None
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}


def _batch(info: Any, model: str | None, listing: Listing, *, fetched: bool) -> BatchView:
    live = listing.batches.get(info.id)
    if live is None or fetched:  # a fetched job's batches had ended (the listing may lag)
        return BatchView(
            id=info.id,
            model=model,
            request_count=info.request_count,
            created_at=info.created_at,
            expires_at=info.expires_at,
            status="ended" if fetched else "not listed",
            url=listing.page_of(info.id),
        )
    counts = live.request_counts
    return BatchView(
        id=info.id,
        model=model,
        request_count=info.request_count,
        created_at=live.created_at,
        expires_at=live.expires_at,
        status=live.processing_status,
        counts={state: int(getattr(counts, state)) for state in COUNT_STATES},
        ended_at=live.ended_at,
        url=listing.page_of(info.id),
    )


def _notes(job: JobDescriptor) -> tuple[str, ...]:
    notes = []
    if job.rejected_count:
        notes.append(f"{job.rejected_count} request(s) rejected before sending")
    if job.cache and job.cache.get("hits"):
        notes.append(f"{job.cache['hits']} answered from the cross-run cache")
    return tuple(notes)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def job_json(job: JobView, now: datetime) -> dict[str, Any]:
    """A job as the JSON endpoint gives it."""
    r = job.record
    expiry = job.expires_in(now)
    return {
        "dag_id": r.dag_id,
        "run_id": r.run_id,
        "task_id": r.task_id,
        "map_index": r.map_index,
        "job_id": job.job_id,
        "conn_id": job.conn_id,
        "submitted_at": job.submitted_at.isoformat(),
        "age_seconds": round(job.age(now).total_seconds()),
        "expires_in_seconds": None if expiry is None else round(expiry.total_seconds()),
        "request_count": job.request_count,
        "counts": job.counts,
        "unlisted": job.unlisted,
        "models": list(job.models),
        "estimate_usd": job.estimate_usd,
        "worst_usd": job.worst_usd,
        "cost_usd": job.cost_usd,
        "fetched": job.fetched,
        "fetch_state": job.fetch_state,
        "listing_error": job.listing_error,
        "batches": [
            {
                "id": b.id,
                "model": b.model,
                "status": b.status,
                "request_count": b.request_count,
                "counts": dict(b.counts) if b.counts is not None else None,
                "expires_at": b.expires_at.isoformat() if b.expires_at else None,
                "url": b.url,
            }
            for b in job.batches
        ],
    }

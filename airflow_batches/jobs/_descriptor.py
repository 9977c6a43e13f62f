"""The job descriptor: the small summary of a job that travels in XCom (ids and counts, never
requests), read by the sensor, the fetch and the evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_batches.api import MessageBatch

__all__ = ["BatchInfo", "JobDescriptor", "descriptor_for_batches", "job_key"]


def job_key(fingerprint: str) -> str:
    """A job's id: the first 16 hex digits of its fingerprint (the SHA-256 of what it sends)."""
    return fingerprint[:16]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BatchInfo(_Model):
    id: str
    request_count: int
    created_at: datetime | None = None
    expires_at: datetime | None = None
    attempt: int = 1
    ids_digest: str = ""
    """Digest of the custom_ids submitted in this batch; empty when unknown (plain ids)."""
    adopted: bool = False
    """Found by listing after a lost create answer rather than created by this job's call."""
    requests_file: str = ""
    """Where in the job folder the batch's requests are staged (for a replacement)."""
    first: int = 0
    """Ordinal of the batch's first request in ``requests_file``."""


class JobDescriptor(_Model):
    """What ``SubmitBatchOperator`` returns to XCom and the sensor and fetcher read."""

    job_id: str
    fingerprint: str
    conn_id: str
    job_dir: str
    """URI of the job's folder on shared storage (ledger, staged requests, raw results)."""
    job_dir_conn_id: str | None = None
    registry_dir: str = ""
    """URI of the deployment's registry of claimed batches (``jobs.submit._registry``), on the same
    storage as ``job_dir``; empty without shared staging."""
    request_count: int
    rejected_count: int = 0
    anthropic_version: str
    batches: list[BatchInfo]
    submitted_at: datetime
    max_requests_per_batch: int | None = None
    max_bytes_per_batch: int | None = None
    """The shard limits the job was submitted with; follow-up batches keep them."""
    estimate: dict[str, Any] | None = None
    """The cost estimate made before the first create (``jobs.cost.Estimate.to_dict``)."""
    matrix: list[dict[str, Any]] | None = None
    """The models of a model-matrix job (``jobs.prepare.ModelMatrix.to_json``), else None."""
    sidecar_file: str = ""
    """Name, within ``job_dir``, of the requests' metadata sidecar (``jobs.prepare._sidecar``)."""
    cache: dict[str, Any] | None = None
    """The cross-run cache's part in the job (``jobs.cache.CacheInfo``), else None."""

    @property
    def batch_ids(self) -> list[str]:
        return [b.id for b in self.batches]


def descriptor_for_batches(
    batches: Sequence[MessageBatch], *, conn_id: str, anthropic_version: str
) -> JobDescriptor:
    """A job made of batches created elsewhere (plain batch ids): nothing staged, so nothing
    to resend and no custom_ids to check against."""
    identity = hashlib.sha256(",".join(b.id for b in batches).encode()).hexdigest()
    return JobDescriptor(
        job_id=job_key(identity),
        fingerprint=identity,
        conn_id=conn_id,
        job_dir="",
        request_count=sum(b.request_counts.total for b in batches),
        anthropic_version=anthropic_version,
        batches=[
            BatchInfo(
                id=b.id,
                request_count=b.request_counts.total,
                created_at=b.created_at,
                expires_at=b.expires_at,
            )
            for b in batches
        ],
        submitted_at=min(b.created_at for b in batches),
    )

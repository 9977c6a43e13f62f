"""The job ledger and the job descriptor.

The ledger is the write-ahead record that makes submission idempotent. It lives where every
worker sees it and task retries find it: Airflow's task state store (metadata DB), or else
``ledger.json`` in the job's folder on shared storage (see docs/idempotency.md). Before each
create call the shard's *intent* (a timestamp) is written; right after, the batch id. A retry
of the task reads the ledger: shards with an id are re-attached, shards with an intent but no
id are looked for among the workspace's recent batches (the create may have succeeded just
before a crash), the rest are created.

The descriptor is the small summary that travels in XCom: ids and counts, never requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_batches.jobs._registry import Window


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ShardRecord(_Model):
    index: int
    request_count: int
    offset: int
    length: int
    body_bytes: int
    first: int = 0
    """Ordinal (0-based) of the shard's first request in the staged requests."""
    ids_digest: str = ""
    """Digest of the shard's custom_ids (``_ids``)."""
    intents: list[datetime] = Field(default_factory=list)
    """When each create call for this shard was about to be sent (our clock)."""
    windows: list[Window] = Field(default_factory=list)
    """Each create call on the server's clock: sent, failure seen, latest possible batch."""
    batch_id: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    adopted: bool = False
    """True when the batch was found by listing (a create whose answer was lost)."""


class Ledger(_Model):
    version: int = 1
    fingerprint: str
    request_count: int
    rejected_count: int = 0
    attempt: int = 1
    """1 for the job's own submission; 2, 3, ... for follow-ups of failed requests."""
    requests_file: str
    """Name, within the job folder, of the staged requests this ledger's shards index."""
    anthropic_version: str
    shards: list[ShardRecord]


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
    """URI of the deployment's registry of claimed batches (``_registry``), on the same
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
    """The cost estimate made before the first create (``jobs._estimate.Estimate.to_dict``)."""
    matrix: list[dict[str, Any]] | None = None
    """The models of a model-matrix job (``jobs._matrix.ModelMatrix.to_json``), else None."""
    sidecar_file: str = ""
    """Name, within ``job_dir``, of the requests' metadata sidecar (``jobs._metadata``)."""
    cache: dict[str, Any] | None = None
    """The cross-run cache's part in the job (``jobs._cache.CachePlan``), else None."""

    @property
    def batch_ids(self) -> list[str]:
        return [b.id for b in self.batches]

"""The job ledger and where it is kept.

The ledger is the write-ahead record that makes submission idempotent. It lives where every
worker sees it and task retries find it: Airflow's task state store (metadata DB), or else
``ledger.json`` in the job's folder on shared storage (see docs/idempotency.md). Before each
create call the shard's *intent* (a timestamp) is written; right after, the batch id. A retry
of the task reads the ledger: shards with an id are re-attached, shards with an intent but no
id are looked for among the workspace's recent batches (the create may have succeeded just
before a crash), the rest are created.

The job's descriptor (``jobs._descriptor``) is made from the ledger once every batch exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from airflow_batches.jobs._descriptor import BatchInfo, JobDescriptor, job_key
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import REQUESTS_FILE, Limits, Prepared
from airflow_batches.jobs.submit._registry import Window


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


LEDGER_FILE = "ledger.json"


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


def new_ledger(
    prepared: Prepared,
    *,
    anthropic_version: str,
    attempt: int = 1,
    requests_file: str = REQUESTS_FILE,
) -> Ledger:
    return Ledger(
        fingerprint=prepared.fingerprint,
        request_count=prepared.request_count,
        rejected_count=prepared.rejected_count,
        attempt=attempt,
        requests_file=requests_file,
        anthropic_version=anthropic_version,
        shards=[
            ShardRecord(
                index=s.index,
                request_count=s.count,
                offset=s.offset,
                length=s.length,
                body_bytes=s.body_bytes,
                first=s.first,
                ids_digest=s.ids_digest,
            )
            for s in prepared.shards
        ],
    )


class LedgerBackend(Protocol):
    """Where a ledger is kept between task tries: must be visible from every worker."""

    def load(self) -> Ledger | None: ...

    def save(self, ledger: Ledger) -> None: ...


class FileLedger:
    """A ledger kept as JSON in a job folder on shared storage."""

    def __init__(self, store: JobStore, name: str = LEDGER_FILE) -> None:
        self.store = store
        self.name = name

    def __repr__(self) -> str:
        return f"FileLedger({str(self.store.path(self.name))!r})"

    def load(self) -> Ledger | None:
        data = self.store.read_json(self.name)
        return None if data is None else Ledger.model_validate(data)

    def save(self, ledger: Ledger) -> None:
        self.store.write_json(ledger.model_dump(mode="json"), self.name)


class MemoryLedger:
    """A ledger that lives as long as the process (no crash recovery; tests, local runs)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> Ledger | None:
        return None if self.data is None else Ledger.model_validate(self.data)

    def save(self, ledger: Ledger) -> None:
        self.data = ledger.model_dump(mode="json")


def batch_infos(ledger: Ledger, requests_file: str | None = None) -> list[BatchInfo]:
    """What the fetch needs of each shard's batch; ``requests_file`` says where, within the
    job's folder, the ledger's requests are staged (default: the ledger's own name)."""
    return [
        BatchInfo(
            id=s.batch_id or "",
            request_count=s.request_count,
            created_at=s.created_at,
            expires_at=s.expires_at,
            attempt=ledger.attempt,
            ids_digest=s.ids_digest,
            adopted=s.adopted,
            requests_file=requests_file or ledger.requests_file,
            first=s.first,
        )
        for s in ledger.shards
    ]


def descriptor_from_ledger(
    ledger: Ledger,
    *,
    conn_id: str,
    job_dir: str,
    job_dir_conn_id: str | None,
    submitted_at: datetime,
    limits: Limits | None = None,
) -> JobDescriptor:
    return JobDescriptor(
        job_id=job_key(ledger.fingerprint),
        fingerprint=ledger.fingerprint,
        conn_id=conn_id,
        job_dir=job_dir,
        job_dir_conn_id=job_dir_conn_id,
        request_count=ledger.request_count,
        rejected_count=ledger.rejected_count,
        anthropic_version=ledger.anthropic_version,
        batches=batch_infos(ledger),
        submitted_at=submitted_at,
        max_requests_per_batch=limits.max_requests if limits else None,
        max_bytes_per_batch=limits.max_bytes if limits else None,
    )

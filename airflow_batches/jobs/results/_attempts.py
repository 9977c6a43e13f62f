"""A fetch's attempts and what the user asked of it: the state kept between deferrals and
task tries, read by the workflow (``_fetch``) and the publisher (``_publish``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from airflow_batches.api import BatchesError
from airflow_batches.jobs._descriptor import BatchInfo, JobDescriptor
from airflow_batches.jobs.results._checks import RETRYABLE_ERROR_TYPES
from airflow_batches.jobs.results._manifest import RunRef

__all__ = ["Attempt", "FetchOptions", "FetchState", "NotEndedError", "WaitFor"]


class NotEndedError(BatchesError):
    """The job's own batches have not ended: results exist only once they have."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Attempt(_Model):
    number: int
    batches: list[BatchInfo]
    resubmitted_next: dict[str, int] = {}
    """Requests of this attempt resent in the next one, by reason (error type or expired)."""
    replaced: list[str] = []
    """Batches of this attempt found not to hold the job's requests, replaced by new ones."""


class FetchState(_Model):
    """The attempts of a job, kept between deferrals and task tries."""

    job_id: str
    attempts: list[Attempt]

    @property
    def latest(self) -> Attempt:
        return self.attempts[-1]

    @classmethod
    def start(cls, job: JobDescriptor) -> FetchState:
        return cls(job_id=job.job_id, attempts=[Attempt(number=1, batches=job.batches)])


@dataclass(frozen=True)
class FetchOptions:
    """What the user asked of the fetch (see ``FetchResultsOperator``)."""

    resubmit_failed: bool = False
    max_attempts: int = 3
    retry_error_types: frozenset[str] = RETRYABLE_ERROR_TYPES
    split_by_type: bool = False
    split_by_model: bool = False
    overwrite: bool = False
    max_xcom_bytes: int = 1024 * 1024
    retention_warning_days: float = 3.0
    run: RunRef | None = None
    """The task run fetching (``_owner``): recorded in the manifest, owns the destination."""


@dataclass(frozen=True)
class WaitFor:
    """The fetch must wait for batches it created (follow-ups or replacements)."""

    batch_ids: list[str]
    attempt: int

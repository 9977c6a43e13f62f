"""How far a job has got, and what its outcome means: pure functions over MessageBatch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_batches.api import MessageBatch

Severity = Literal["warn", "fail"]
COUNT_FIELDS = ("processing", "succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class JobProgress:
    """Totals over the batches of a job.

    The API reports per-state counts only once a batch has ended (until then every request
    counts as processing), so progress is measured in requests of ended batches.
    """

    batches: int
    ended: int
    canceling: int
    requests: int
    done: int
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, batches: Iterable[MessageBatch]) -> JobProgress:
        items = list(batches)
        counts = dict.fromkeys(COUNT_FIELDS, 0)
        for batch in items:
            for name in COUNT_FIELDS:
                counts[name] += getattr(batch.request_counts, name)
        ended = [b for b in items if b.is_ended]
        return cls(
            batches=len(items),
            ended=len(ended),
            canceling=sum(1 for b in items if b.processing_status == "canceling"),
            requests=sum(b.request_counts.total for b in items),
            done=sum(b.request_counts.total for b in ended),
            counts=counts,
        )

    @property
    def all_ended(self) -> bool:
        return self.batches > 0 and self.ended == self.batches

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.requests if self.requests else 100.0

    def line(self, elapsed_seconds: float | None = None) -> str:
        parts = [
            f"{self.ended}/{self.batches} batch(es) ended",
            f"{self.done:,}/{self.requests:,} requests done ({self.percent:.1f}%)",
            ", ".join(f"{name} {self.counts[name]:,}" for name in COUNT_FIELDS),
        ]
        if self.canceling:
            parts.insert(1, f"{self.canceling} canceling")
        if elapsed_seconds is not None:
            parts.append(f"elapsed {format_duration(elapsed_seconds)}")
        return "; ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass(frozen=True)
class OutcomePolicy:
    """What an ended job's counts mean for the task.

    :param on_errored: "warn" (default) or "fail" when any request errored.
    :param on_expired: "warn" (default) or "fail" when any request expired.
    :param min_success_ratio: fail when succeeded / requests is below it (None: no minimum).
    """

    on_errored: Severity = "warn"
    on_expired: Severity = "warn"
    min_success_ratio: float | None = None

    def __post_init__(self) -> None:
        for name in ("on_errored", "on_expired"):
            if getattr(self, name) not in ("warn", "fail"):
                raise ValueError(f"{name} must be 'warn' or 'fail'")
        ratio = self.min_success_ratio
        if ratio is not None and not 0 <= ratio <= 1:
            raise ValueError("min_success_ratio must be within [0, 1]")


@dataclass(frozen=True)
class Verdict:
    action: Literal["success", "skip", "fail"]
    messages: list[str]


def judge(progress: JobProgress, policy: OutcomePolicy, *, answered: int = 0) -> Verdict:
    """Success, skip (every request was canceled) or failure, with the reasons.

    ``answered``: the job's requests the cross-run cache answered (its succeeded results of an
    earlier run, never sent); they count as succeeded in the success ratio, which is the job's,
    not only of what was sent.
    """
    c = progress.counts
    total = progress.requests
    if total and c["canceled"] == total:
        return Verdict("skip", [f"all {total:,} requests were canceled"])
    warnings: list[str] = []
    failures: list[str] = []
    for name, severity in (("errored", policy.on_errored), ("expired", policy.on_expired)):
        if c[name]:
            text = f"{c[name]:,} of {total:,} requests {name}"
            (failures if severity == "fail" else warnings).append(text)
    if c["canceled"]:
        warnings.append(f"{c['canceled']:,} of {total:,} requests were canceled")
    if policy.min_success_ratio is not None and total:
        ratio = (c["succeeded"] + answered) / (total + answered)
        if ratio < policy.min_success_ratio:
            failures.append(
                f"success ratio {ratio:.2%} is below the minimum {policy.min_success_ratio:.2%}"
            )
    if failures:
        return Verdict("fail", failures + warnings)
    return Verdict("success", warnings)


class WaitEvent(BaseModel):
    """The event BatchTrigger fires; validated when the task resumes."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["ended", "timeout", "error"]
    message: str = ""
    batches: list[MessageBatch] = []
    elapsed: float = 0.0
    permanent: bool = False
    """An error no retry of the task can fix (a 401, a batch that does not exist, ...)."""
    status_code: int | None = None
    """The HTTP status of that error, when it was one."""


def batch_summaries(batches: Sequence[MessageBatch]) -> list[dict[str, Any]]:
    return [b.model_dump(mode="json") for b in batches]

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_batches.api import MessageBatch
from airflow_batches.jobs.wait import JobProgress, OutcomePolicy, format_duration, judge


def batch(status: str = "ended", **counts: int) -> MessageBatch:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    data: dict[str, Any] = {
        "id": "msgbatch_" + "_".join([status, *(f"{k}{v}" for k, v in sorted(counts.items()))]),
        "processing_status": status,
        "request_counts": counts,
        "created_at": now,
        "expires_at": now,
    }
    return MessageBatch.model_validate(data)


def test_progress_counts_only_ended_batches_as_done() -> None:
    progress = JobProgress.of(
        [
            batch(succeeded=6, errored=1),
            batch("in_progress", processing=3),
            batch("canceling", processing=2),
        ]
    )
    assert progress.requests == 12
    assert progress.done == 7
    assert progress.ended == 1
    assert not progress.all_ended
    line = progress.line(elapsed_seconds=3725)
    assert line.startswith("1/3 batch(es) ended; 1 canceling; 7/12 requests done (58.3%)")
    assert "succeeded 6, errored 1" in line
    assert line.endswith("elapsed 1h02m05s")


def test_durations() -> None:
    assert format_duration(5) == "5s"
    assert format_duration(65) == "1m05s"


@pytest.mark.parametrize(
    ("counts", "policy", "action"),
    [
        ({"succeeded": 4}, OutcomePolicy(), "success"),
        ({"canceled": 4}, OutcomePolicy(), "skip"),
        ({"succeeded": 3, "errored": 1}, OutcomePolicy(), "success"),
        ({"succeeded": 3, "errored": 1}, OutcomePolicy(on_errored="fail"), "fail"),
        ({"succeeded": 3, "expired": 1}, OutcomePolicy(on_expired="fail"), "fail"),
        ({"succeeded": 3, "expired": 1}, OutcomePolicy(min_success_ratio=0.75), "success"),
        ({"succeeded": 2, "expired": 2}, OutcomePolicy(min_success_ratio=0.75), "fail"),
        ({"succeeded": 2, "canceled": 2}, OutcomePolicy(), "success"),
    ],
)
def test_outcome_policy(counts: dict[str, int], policy: OutcomePolicy, action: str) -> None:
    verdict = judge(JobProgress.of([batch(**counts)]), policy)
    assert verdict.action == action
    if action != "success" or len(counts) > 1:
        assert verdict.messages


def test_requests_answered_from_the_cache_count_as_succeeded_in_the_ratio() -> None:
    # One request sent (the rest answered by the cross-run cache) and it errored: the job's
    # success ratio is 99 of 100, not 0 of 1.
    progress = JobProgress.of([batch(errored=1)])
    policy = OutcomePolicy(min_success_ratio=0.5)
    assert judge(progress, policy).action == "fail"
    verdict = judge(progress, policy, answered=99)
    assert verdict.action == "success"
    assert verdict.messages == ["1 of 1 requests errored"]
    assert judge(JobProgress.of([batch(errored=3)]), policy, answered=2).action == "fail"


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="on_errored"):
        OutcomePolicy(on_errored="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_success_ratio"):
        OutcomePolicy(min_success_ratio=1.5)

"""A DAG for the live-stack test of the spend approval (tests/e2e/test_live_approval.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_batches import SubmitBatchOperator


def requests(prefix: str, n: int, model: str = "claude-opus-5-5") -> list[dict[str, object]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "params": {
                "model": model,
                "max_tokens": 2000,
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        }
        for i in range(n)
    ]


with DAG("spend_approval", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    # Cents each: a dollar's limit lets them through, a tenth of a cent's does not.
    SubmitBatchOperator(
        task_id="cheap", requests=requests("cheap", 1, "claude-haiku-4-5"), approve_over_usd=1
    )
    SubmitBatchOperator(
        task_id="approved",
        requests=requests("approved", 6),
        approve_over_usd=0.001,
        max_requests_per_batch=3,
    )
    SubmitBatchOperator(
        task_id="rejected", requests=requests("rejected", 2), approve_over_usd=0.001
    )
    SubmitBatchOperator(  # alice may answer; bob, an admin, may not
        task_id="assigned",
        requests=requests("assigned", 2),
        approve_over_usd=0.001,
        approvers=["alice"],
    )
    SubmitBatchOperator(
        task_id="unanswered",
        requests=requests("unanswered", 2),
        approve_over_usd=0.001,
        approval_timeout=timedelta(seconds=15),
    )

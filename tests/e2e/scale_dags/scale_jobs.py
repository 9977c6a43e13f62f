"""The scale test's DAG (tests/e2e/test_distributed.py): three jobs in each run.

* ``inline``: requests built by a task, passed through XCom;
* ``file``: a JSONL file on S3, sharded into several batches;
* ``resub``: requests the emulator's responder fails now and then (tests/e2e/scale.py), resent
  by the fetch as follow-up batches.

Every custom_id starts with the run's tag (``dag_run.conf["tag"]``), so each batch can be
traced to the run whose requests it holds. Staging comes from ``[airflow_batches]`` (S3, set by
the stack), as a deployment would configure it once for every DAG.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator

BUCKET = os.environ["SCALE_BUCKET"]
S3_CONN = os.environ["SCALE_S3_CONN"]
INLINE_REQUESTS = int(os.environ.get("SCALE_INLINE_REQUESTS", "12"))
RESUB_REQUESTS = int(os.environ.get("SCALE_RESUB_REQUESTS", "20"))
FILE_SHARD = int(os.environ.get("SCALE_FILE_SHARD", "16"))
TAG = "{{ dag_run.conf['tag'] }}"
MODEL = {"model": "claude-haiku-4-5", "max_tokens": 16}


def _request(custom_id: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"messages": [{"role": "user", "content": f"question {custom_id}"}]},
    }


with DAG(
    "scale_jobs",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=100,
    max_active_tasks=500,
    # Safe to retry: a retried submit re-attaches to its batches (docs/idempotency.md).
    default_args={"retries": 3, "retry_delay": timedelta(seconds=5)},
):

    @task(multiple_outputs=True)
    def build_requests(dag_run: Any = None) -> dict[str, list[dict[str, Any]]]:
        tag = dag_run.conf["tag"]
        return {
            "inline": [_request(f"{tag}-inline-{i}") for i in range(INLINE_REQUESTS)],
            "resub": [_request(f"{tag}-resub-{i}") for i in range(RESUB_REQUESTS)],
        }

    built = build_requests()
    jobs: dict[str, dict[str, Any]] = {
        "inline": {"requests": built["inline"]},
        "file": {
            "requests_path": f"s3://{BUCKET}/in/{TAG}.jsonl",
            "requests_conn_id": S3_CONN,
            "max_requests_per_batch": FILE_SHARD,
        },
        "resub": {"requests": built["resub"]},
    }
    for job, source in jobs.items():
        submit = SubmitBatchOperator(task_id=f"submit_{job}", defaults=MODEL, **source)
        wait = BatchSensor(
            task_id=f"wait_{job}",
            job=submit.output,
            deferrable=True,
            poke_interval=2,
            max_poke_interval=5,
            on_errored="warn",
        )
        fetch = FetchResultsOperator(
            task_id=f"fetch_{job}",
            job=submit.output,
            destination=f"s3://{BUCKET}/results/{TAG}/{job}",
            destination_conn_id=S3_CONN,
            resubmit_failed=job == "resub",
            max_attempts=4,
            deferrable=True,
            poke_interval=2,
            max_poke_interval=5,
            asset=False,
        )
        submit >> wait >> fetch

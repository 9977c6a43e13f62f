"""DAGs for the live-stack tests of our own deferrable sensor and trigger."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator

RESULTS = os.environ["LIVE_RESULTS"]
REQUESTS = [
    {
        "custom_id": f"live-{i}",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"question {i}"}],
        },
    }
    for i in range(12)
]

with DAG("live_batches", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = SubmitBatchOperator(task_id="submit", requests=REQUESTS)
    # A retry, as docs/compatibility.md advises: on 3.1 Airflow itself can fail a deferred
    # task whose trigger fires within seconds (apache/airflow#66374); the retry re-polls.
    wait = BatchSensor(
        task_id="wait",
        job=submit.output,
        poke_interval=0.2,
        max_poke_interval=0.5,
        deferrable=True,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=RESULTS + "/{{ run_id | replace(':', '-') }}",
    )
    submit >> wait >> fetch

with DAG("live_batches_kill", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = SubmitBatchOperator(task_id="submit", requests=REQUESTS[:3])
    BatchSensor(task_id="wait", job=submit.output, poke_interval=0.2, deferrable=True)

with DAG("live_batches_many", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    # Four deferred waits at once on one triggerer: they share one status poller.
    for n in range(4):
        submit = SubmitBatchOperator(task_id=f"submit_{n}", requests=REQUESTS[: n + 1])
        BatchSensor(task_id=f"wait_{n}", job=submit.output, poke_interval=0.2, deferrable=True)

with DAG(
    "live_batches_kill_in_worker", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
):
    submit = SubmitBatchOperator(task_id="submit", requests=REQUESTS[:3])
    BatchSensor(task_id="wait", job=submit.output, poke_interval=0.2, deferrable=False)

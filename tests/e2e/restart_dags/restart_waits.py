"""A DAG whose sensor and whose fetch (waiting for its follow-up batch) both defer."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator

REQUESTS = [
    {
        "custom_id": f"restart-{i}",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"question {i}"}],
        },
    }
    for i in range(8)
]

# One retry each, as docs/compatibility.md advises for deferrable waits (Airflow's own race can
# fail a try whose trigger fired within seconds); a retry polls the same batches, or re-attaches
# to the fetch's attempts: nothing is sent again.
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=1)}

with DAG("restart_waits", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = SubmitBatchOperator(task_id="submit", requests=REQUESTS)
    wait = BatchSensor(
        task_id="wait",
        job=submit.output,
        poke_interval=0.2,
        max_poke_interval=0.5,
        deferrable=True,
        **RETRY,
    )
    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=os.environ["LIVE_RESULTS"],
        resubmit_failed=True,
        max_attempts=2,
        deferrable=True,
        poke_interval=0.2,
        max_poke_interval=0.5,
        **RETRY,
    )
    submit >> wait >> fetch

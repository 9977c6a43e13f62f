"""A DAG whose runs submit jobs of identical sizes to one workspace, each run its own ids."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator

RESULTS = os.environ["LIVE_RESULTS"]

with DAG("concurrent_jobs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def build(**context: Any) -> list[dict[str, Any]]:
        tag = context["dag_run"].conf["tag"]
        return [
            {
                "custom_id": f"{tag}-{i}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"{tag} question {i}"}],
                },
            }
            for i in range(4)
        ]

    submit = SubmitBatchOperator(
        task_id="submit",
        requests=build(),
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    wait = BatchSensor(
        task_id="wait", job=submit.output, poke_interval=0.2, max_poke_interval=0.5, deferrable=True
    )
    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=RESULTS + "/{{ dag_run.conf['tag'] }}",
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    submit >> wait >> fetch

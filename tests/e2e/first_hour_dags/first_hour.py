"""A newcomer's first DAGs (docs/first-hour.md), run by tests/e2e/test_first_hour.py with
``airflow dags test`` and connections stored in the metadata DB (``airflow connections add``).

``first_hour`` labels comments SAFE / UNSAFE, publishes them to one folder per *day*
(``{{ ds }}``: the mistake the docs warn about, so that a second run on the same day is
refused) and writes a CSV of row id and label with ``read_results``. ``first_hour_mistakes``
makes the other first-hour mistakes, each task with retries that must not be spent on them
(but for the one failure a retry can fix).
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator, read_results

RESULTS = os.environ["FIRST_HOUR_RESULTS"]
STAGING = os.environ["FIRST_HOUR_STAGING"]
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=0)}

COMMENTS = [
    "Great write-up, thanks!",
    "I hate you and I will find you.",
    "Could you share the dataset?",
    "Nobody wants you here, hateful troll.",
    "The second chart is mislabelled.",
    "This is the best thread today.",
]

with DAG("first_hour", schedule=None, start_date=datetime(2026, 1, 1), default_args=RETRIES):

    @task
    def build_requests() -> list[dict]:
        return [
            {
                "custom_id": f"comment-{i}",
                "params": {
                    "system": "Answer SAFE or UNSAFE.",
                    "messages": [{"role": "user", "content": text}],
                },
                "metadata": {"row": i},
            }
            for i, text in enumerate(COMMENTS)
        ]

    submit = SubmitBatchOperator(
        task_id="submit",
        requests=build_requests(),
        defaults={"model": "claude-haiku-4-5", "max_tokens": 8},
        staging_path=STAGING,
    )
    wait = BatchSensor(task_id="wait", job=submit.output, deferrable=True, poke_interval=0.2)
    fetch = FetchResultsOperator(
        task_id="fetch", job=submit.output, destination=RESULTS + "/{{ ds }}"
    )

    @task
    def labels_to_csv(manifest: dict) -> str:
        """docs/operators.md's recipe: the results as a CSV of row id and label."""
        target = ObjectStoragePath(manifest["destination"]) / "labels.csv"
        with target.open("w") as out:
            writer = csv.writer(out)
            writer.writerow(["row_id", "label"])
            for row in read_results(manifest):
                label = row.text.strip() if row.ok else f"ERROR ({row.error or row.type})"
                writer.writerow([row.metadata["row"], label])
        return str(target)

    submit >> wait >> fetch >> labels_to_csv(fetch.output)


REQUESTS = [
    {
        "custom_id": f"c{i}",
        "params": {
            "model": "claude-haiku-4-5",
            "messages": [{"role": "user", "content": text}],
        },
    }
    for i, text in enumerate(COMMENTS)
]

with DAG(
    "first_hour_mistakes", schedule=None, start_date=datetime(2026, 1, 1), default_args=RETRIES
):
    SubmitBatchOperator(task_id="no_max_tokens", requests=REQUESTS, staging_path=STAGING)
    SubmitBatchOperator(
        task_id="wrong_key",
        requests=REQUESTS,
        defaults={"max_tokens": 8},
        conn_id="mb_wrong_key",
        staging_path=STAGING,
    )
    BatchSensor(task_id="no_such_batch", job="msgbatch_01NoSuchBatchEverExisted", poke_interval=0.2)
    # The one failure a retry can fix: the API out of reach (here, a port nobody listens on).
    SubmitBatchOperator(
        task_id="unreachable",
        requests=REQUESTS,
        defaults={"max_tokens": 8},
        conn_id="mb_unreachable",
        staging_path=STAGING,
        create_attempts=1,
        retries=1,
    )

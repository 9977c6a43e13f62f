"""Product reviews labelled by sentiment in one Message Batches job, the results counted.

The DAG of docs/migrating.md, converted from ``apache-airflow-providers-anthropic``: the same
DAG written for that provider is ``dags_examples/migrating/reviews_official_provider.py`` (not
loaded: ``.airflowignore``). What changed, line by line, is in docs/migrating.md.

It runs as is against the local emulator (any responder; with the default one the labels are
the emulator's deterministic text, not sentiments) and against the real API once the
``message_batches_default`` connection holds a real key and no host. ``tests/e2e/
test_migrating.py`` runs it with ``airflow dags test``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator, read_results

# Any ObjectStoragePath URI (s3://bucket/results, gs://..., file://...), shared by every worker.
RESULTS_ROOT = os.environ.get("AIRFLOW_BATCHES_RESULTS", "file:///tmp/airflow-batches/results")
STAGING = os.environ.get("AIRFLOW_BATCHES_STAGING", "file:///tmp/airflow-batches/staging")
MODEL = "claude-haiku-4-5"
SYSTEM = "Label the sentiment of the product review: POSITIVE, NEGATIVE or NEUTRAL. One word."

REVIEWS = [
    "Absolutely love it, would buy again.",
    "Broke after one use, very disappointed.",
    "Does what it says on the box. Nothing special.",
    "Shipping took three weeks but the product itself is great.",
    "Perfect fit and the colour is exactly as pictured.",
    "Stopped charging after a week; the refund took a month.",
    "It is a phone case.",
    "Great value, my second one already.",
]

with DAG(
    dag_id="message_batches_reviews",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["message-batches", "example"],
):

    @task
    def build_requests() -> list[dict]:
        # `metadata` is never sent: the fetch joins it onto the review's result line.
        return [
            {
                "custom_id": f"review-{i}",
                "params": {"messages": [{"role": "user", "content": f"Review: {text}"}]},
                "metadata": {"review": i},
            }
            for i, text in enumerate(REVIEWS)
        ]

    # Validates every request before sending anything; a retry re-attaches to the batch
    # already created instead of paying for a second one (the staging folder keeps the ledger).
    submit = SubmitBatchOperator(
        task_id="submit",
        requests=build_requests(),
        defaults={"model": MODEL, "max_tokens": 8, "system": SYSTEM},
        staging_path=STAGING,
        retries=3,
    )

    # Pokes once, then waits in the triggerer (no worker slot held); the first poll 5 s after,
    # growing by half each time up to 5 minutes.
    wait = BatchSensor(
        task_id="wait",
        job=submit.output,
        deferrable=True,
        poke_interval=5,
        max_poke_interval=300,
    )

    # The results in object storage, one folder per run, with a manifest; the requests that
    # ended overloaded or expired are sent again, alone, and waited for in the triggerer too.
    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=RESULTS_ROOT + "/reviews/{{ run_id }}",
        resubmit_failed=True,
        deferrable=True,
        poke_interval=5,
        retries=3,
    )

    @task
    def count_labels(manifest: dict) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in read_results(manifest):
            label = (row.text or "").strip().upper() if row.ok else f"ERROR {row.type}"
            counts[label] = counts.get(label, 0) + 1
        return counts

    submit >> wait >> fetch >> count_labels(fetch.output)

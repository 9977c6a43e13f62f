"""``dags_examples/reviews.py`` as it is written for ``apache-airflow-providers-anthropic``
(1.2.0): ``AnthropicBatchOperator`` submits, ``AnthropicBatchSensor`` waits, and tasks of
one's own stream the results with ``AnthropicHook`` and count them.

The "before" of docs/migrating.md. Not loaded by Airflow here (``dags_examples/.airflowignore``)
and not run by the tests: this package does not install the official provider.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.providers.anthropic.hooks.anthropic import AnthropicHook
from airflow.providers.anthropic.operators.batch import AnthropicBatchOperator
from airflow.providers.anthropic.sensors.batch import AnthropicBatchSensor
from airflow.sdk import DAG, ObjectStoragePath, task

RESULTS_ROOT = os.environ.get("AIRFLOW_BATCHES_RESULTS", "file:///tmp/airflow-batches/results")
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
    dag_id="anthropic_reviews",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["anthropic", "example"],
):

    @task
    def build_requests() -> list[dict]:
        # Requests go to the API as given: there is no field of one's own (the review number
        # lives in the custom_id), and every request repeats max_tokens and the system prompt.
        return [
            {
                "custom_id": f"review-{i}",
                "params": {
                    "max_tokens": 8,
                    "system": SYSTEM,
                    "messages": [{"role": "user", "content": f"Review: {text}"}],
                },
            }
            for i, text in enumerate(REVIEWS)
        ]

    submit = AnthropicBatchOperator(
        task_id="submit",
        requests=build_requests(),
        model=MODEL,  # for the requests that name no model
        conn_id="anthropic_default",
        wait_for_completion=False,  # return the batch id at once: the sensor waits
        retries=0,  # a retry would create, and pay for, a second batch
    )

    wait = AnthropicBatchSensor(
        task_id="wait",
        batch_id=submit.output,  # the operator returns the batch id
        conn_id="anthropic_default",
        deferrable=True,
        poke_interval=60,  # also the trigger's poll interval
        timeout=24 * 60 * 60,
        fail_on_partial_error=False,
    )

    @task
    def save_results(batch_id: str, run_id: str | None = None) -> str:
        # No fetch operator: the results are streamed with the hook and written by hand.
        target = ObjectStoragePath(f"{RESULTS_ROOT}/reviews/{run_id}/results.jsonl")
        target.parent.mkdir(parents=True, exist_ok=True)
        hook = AnthropicHook(conn_id="anthropic_default")
        with target.open("w") as out:
            for result in hook.stream_batch_results(batch_id):
                out.write(result.model_dump_json() + "\n")
        return str(target)

    @task
    def count_labels(path: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        with ObjectStoragePath(path).open() as lines:
            for line in lines:
                result = json.loads(line)["result"]
                if result["type"] == "succeeded":
                    label = result["message"]["content"][0]["text"].strip().upper()
                else:
                    label = f"ERROR {result['type']}"
                counts[label] = counts.get(label, 0) + 1
        return counts

    saved = save_results(submit.output)
    wait >> saved
    count_labels(saved)

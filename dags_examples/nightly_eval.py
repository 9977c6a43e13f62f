"""Nightly evaluation: build requests, submit them as a batch job, wait, fetch with a cost.

Copy this file into your DAGs folder. It runs as is against the local emulator
(``make demo``) and against the real API once the ``message_batches_default`` connection
holds a real key and no host (see README, "Pointing at the real API").
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_batches import BatchSensor, FetchResultsOperator, SubmitBatchOperator

# Where the results land: any ObjectStoragePath URI (s3://bucket/evals, gs://..., file://...).
RESULTS_ROOT = os.environ.get("AIRFLOW_BATCHES_RESULTS", "file:///tmp/airflow-batches/results")
RESULTS = Asset(name="nightly_eval_results", uri=RESULTS_ROOT)
# Shared storage for the staged requests: lets a retry re-attach and failures be resent.
STAGING = os.environ.get("AIRFLOW_BATCHES_STAGING", "file:///tmp/airflow-batches/staging")

# A long shared instruction marked for prompt caching: every request repeats it, so after the
# first write most requests read it from the cache (at 10 % of the input price).
RUBRIC = "\n".join(
    f"Rule {i}: answer in at most two sentences, cite no sources, and say 'unsure' when a "
    "question has no single factual answer; never invent numbers or names."
    for i in range(1, 41)
)

QUESTIONS = [
    "What is the capital of France?",
    "Summarise the plot of Hamlet in one sentence.",
    "Name three prime numbers greater than 100.",
    "Translate 'good morning' into Spanish.",
    "What does HTTP status 429 mean?",
]

with DAG(
    dag_id="message_batches_nightly_eval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["message-batches", "example"],
    params={"copies": 20},
):

    @task
    def build_requests(params: dict | None = None) -> list[dict]:
        """One request per question and copy; custom_ids are ours and are kept as given."""
        copies = int((params or {}).get("copies", 20))
        return [
            {
                "custom_id": f"q{q}-c{c}",
                "params": {"messages": [{"role": "user", "content": question}]},
            }
            for c in range(copies)
            for q, question in enumerate(QUESTIONS)
        ]

    submit = SubmitBatchOperator(
        task_id="submit",
        requests=build_requests(),
        # Filled in where a request leaves them out; the connection's default model comes last.
        defaults={
            "model": "claude-haiku-4-5",
            "max_tokens": 256,
            "system": [
                {
                    "type": "text",
                    "text": "You are a precise assistant.\n" + RUBRIC,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
        staging_path=STAGING,
        retries=3,
    )

    wait = BatchSensor(
        task_id="wait",
        job=submit.output,
        poke_interval=5,
        max_poke_interval=300,
        deferrable=True,
        on_errored="warn",
        # Fail fast on a broken job (a wrong model, a bad prompt); the fetch resends the
        # transient failures, so a few errors here are expected and fine.
        min_success_ratio=0.5,
    )

    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=RESULTS_ROOT + "/{{ run_id | replace(':', '-') | replace('+', '-') }}",
        asset=RESULTS,
        split_by_type=False,
        resubmit_failed=True,
        max_attempts=3,
        deferrable=True,  # follow-up batches are waited for in the triggerer too
        poke_interval=5,
        retries=3,
    )

    submit >> wait >> fetch

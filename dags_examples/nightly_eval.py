"""Nightly evaluation across models: one batch job per night, scored, compared, reported.

Copy this file into your DAGs folder. It runs as is against the local emulator (``make
demo``), whose eval responder answers the built-in task set (arithmetic, capitals, JSON
extractions) with an error rate per model, and against the real API once the
``message_batches_default`` connection holds a real key and no host (see README, "Pointing at
the real API"); then replace ``build_requests`` with your own eval set. The thresholds expect
answers that can be right: against the emulator, run it with the eval responder (``make demo``
does).

Each request carries ``metadata`` (its category and expected answer): never sent, joined onto
its result line, read by the scorer. ``models=`` sends every request to each model as one
job. ``cache_path=`` (``AIRFLOW_BATCHES_CACHE``) answers a request already answered on an
earlier night (same params, model, API version and betas) from that result: an unchanged eval
run again sends nothing.
The evaluation compares each model with the last night that passed its thresholds (found
through the Asset) and writes ``report.html`` beside the results.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_batches import (
    BatchSensor,
    EvaluateResultsOperator,
    FetchResultsOperator,
    SubmitBatchOperator,
)
from airflow_batches.evals import by_category, exact_match, json_schema, numeric

# Where the results land: any ObjectStoragePath URI (s3://bucket/evals, gs://..., file://...).
RESULTS_ROOT = os.environ.get("AIRFLOW_BATCHES_RESULTS", "file:///tmp/airflow-batches/results")
RESULTS = Asset(name="nightly_eval_results", uri=RESULTS_ROOT)
# The evaluation's own Asset: each successful evaluation's summary; the next night's baseline.
SCORES = Asset(name="nightly_eval_scores", uri=RESULTS_ROOT + "/scores")
# Shared storage for the staged requests: retries re-attach, failures are resent.
STAGING = os.environ.get("AIRFLOW_BATCHES_STAGING", "file:///tmp/airflow-batches/staging")
# The cross-run cache (opt-in): every night reads it, and adds what it had to send. `make demo`
# sets it; None sends every request every night.
CACHE = os.environ.get("AIRFLOW_BATCHES_CACHE")

MODELS = ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"]

# A long shared instruction marked for prompt caching: every request repeats it, so after the
# first write most requests read it from the cache (at 10 % of the input price).
RUBRIC = "\n".join(
    f"Rule {i}: answer with the value asked for and nothing else; no sentence around it, no "
    "unit unless asked, no explanation; JSON when JSON is asked for."
    for i in range(1, 41)
)

SCORER = by_category(
    {
        "arithmetic": numeric(),  # the last number of the answer == metadata["expected"]
        "lookup": exact_match(),  # the answer == metadata["expected"], case and spaces aside
        "extraction": json_schema(schema_key="schema"),  # valid, and == metadata["expected"]
    }
)

with DAG(
    dag_id="message_batches_nightly_eval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["message-batches", "example", "evals"],
    params={"size": 300, "seed": 2026},
):

    @task
    def build_requests(params: dict | None = None) -> list[dict]:
        """The eval set: {custom_id, params, metadata} per question (the emulator's own)."""
        from airflow_batches.emulator.evalset import eval_requests

        options = params or {}
        return eval_requests(int(options.get("size", 300)), seed=int(options.get("seed", 2026)))

    submit = SubmitBatchOperator(
        task_id="submit",
        requests=build_requests(),
        models=MODELS,
        defaults={
            "max_tokens": 64,
            "system": [
                {
                    "type": "text",
                    "text": "You are a precise assistant.\n" + RUBRIC,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
        staging_path=STAGING,
        cache_path=CACHE,
        retries=3,
    )

    wait = BatchSensor(
        task_id="wait",
        job=submit.output,
        poke_interval=5,
        max_poke_interval=300,
        deferrable=True,
        min_success_ratio=0.5,  # fail fast on a broken job; the fetch resends transient errors
    )

    fetch = FetchResultsOperator(
        task_id="fetch",
        job=submit.output,
        destination=RESULTS_ROOT + "/{{ run_id | replace(':', '-') | replace('+', '-') }}",
        asset=RESULTS,
        resubmit_failed=True,
        max_attempts=4,
        deferrable=True,
        poke_interval=5,
        retries=3,
    )

    evaluate = EvaluateResultsOperator(
        task_id="evaluate",
        results=fetch.output,
        scorer=SCORER,
        asset=SCORES,
        min_score=0.5,  # each model's mean score
        max_regression=0.05,  # no model may lose more than 5 points against the last night
    )

    submit >> wait >> fetch >> evaluate

"""DAGs for the live test of the Message Batches page (tests/e2e/test_live_ui.py): a job
waited for in the triggerer, and a nightly evaluation of two models."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset

from airflow_batches import (
    BatchSensor,
    EvaluateResultsOperator,
    FetchResultsOperator,
    SubmitBatchOperator,
)
from airflow_batches.emulator.evalset import eval_requests
from airflow_batches.evals import by_category, exact_match, json_schema, numeric

RESULTS = os.environ["LIVE_RESULTS"]
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
RUN_FOLDER = "/{{ run_id | replace(':', '-') | replace('+', '-') }}"
# On 3.1 Airflow itself can fail a deferred task whose trigger fires within seconds
# (apache/airflow#66374, docs/compatibility.md): a retry re-polls.
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=1)}

with DAG("ui_jobs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = SubmitBatchOperator(
        task_id="submit",
        requests=eval_requests(8, seed=11),
        models=MODELS,
        defaults={"max_tokens": 64},
    )
    wait = BatchSensor(
        task_id="wait", job=submit.output, poke_interval=0.5, deferrable=True, **RETRY
    )
    fetch = FetchResultsOperator(
        task_id="fetch", job=submit.output, destination=RESULTS + "/jobs" + RUN_FOLDER
    )
    submit >> wait >> fetch

with DAG("ui_nightly", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = SubmitBatchOperator(
        task_id="submit",
        requests=eval_requests(12, seed=3),
        models=MODELS,
        defaults={"max_tokens": 64},
    )
    wait = BatchSensor(
        task_id="wait", job=submit.output, poke_interval=0.5, deferrable=True, **RETRY
    )
    fetch = FetchResultsOperator(
        task_id="fetch", job=submit.output, destination=RESULTS + "/nightly" + RUN_FOLDER
    )
    evaluate = EvaluateResultsOperator(
        task_id="evaluate",
        results=fetch.output,
        scorer=by_category(
            {
                "arithmetic": numeric(),
                "lookup": exact_match(),
                "extraction": json_schema(schema_key="schema"),
            }
        ),
        asset=Asset(name="ui_nightly_scores", uri=RESULTS + "/nightly/scores"),
        max_regression=0.05,
    )
    submit >> wait >> fetch >> evaluate

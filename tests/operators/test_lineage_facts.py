"""What the operators tell a lineage catalog, without running them: dataset names per
OpenLineage's naming, what each moment of a task reports, and what never goes in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_batches import EvaluateResultsOperator, FetchResultsOperator, SubmitBatchOperator
from airflow_batches.operators._lineage_facts import (
    FACET_KEY,
    dataset_name,
    evaluate_lineage,
    fetch_lineage,
    submit_lineage,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/in/requests.jsonl", ("s3://bucket", "in/requests.jsonl")),
        # The Airflow connection in the URI is not part of the dataset.
        ("s3://aws_default@bucket/in/requests.jsonl", ("s3://bucket", "in/requests.jsonl")),
        ("s3a://bucket/k", ("s3://bucket", "k")),
        ("gs://bucket/a/b.jsonl", ("gs://bucket", "a/b.jsonl")),
        ("gcs://bucket/a/b.jsonl", ("gs://bucket", "a/b.jsonl")),
        ("file:///data/in/requests.jsonl", ("file", "/data/in/requests.jsonl")),
        ("/data/in/requests.jsonl", ("file", "/data/in/requests.jsonl")),
        ("file:///data/staging/job/", ("file", "/data/staging/job")),
        ("file://host/data/x", ("file://host", "/data/x")),
        (
            "abfss://container@account.dfs.core.windows.net/dir/f.jsonl",
            ("abfss://container@account.dfs.core.windows.net", "/dir/f.jsonl"),
        ),
        ("hdfs://namenode:8020/data/x", ("hdfs://namenode:8020", "/data/x")),
    ],
)
def test_dataset_names_follow_openlineage_naming(uri: str, expected: tuple[str, str]) -> None:
    assert dataset_name(uri) == expected


JOB: dict[str, Any] = {
    "job_id": "bb483711ce9f5c96",
    "fingerprint": "bb483711ce9f5c96" + "0" * 48,
    "conn_id": "message_batches_default",
    "job_dir": "s3://aws_default@staging/dag/run/submit/bb483711ce9f5c96",
    "request_count": 4,
    "rejected_count": 1,
    "anthropic_version": "2023-06-01",
    "batches": [{"id": "msgbatch_a", "request_count": 2}, {"id": "msgbatch_b", "request_count": 1}],
    "submitted_at": "2026-12-06T21:58:56Z",
    "estimate": {
        "expected_usd": 0.5,
        "worst_usd": 0.9,
        "models": {"claude-haiku-4-5": {"requests": 2, "expected_usd": 0.1, "worst_usd": 0.2}},
    },
    "matrix": [
        {"model": "claude-haiku-4-5", "label": "haiku", "params": {"system": "SECRET PROMPT"}},
        {"model": "claude-sonnet-4-5", "label": "sonnet", "params": {}},
    ],
    "cache": {"hits": 1, "path": "s3://cache"},
}


def test_submit_reports_the_requests_file_then_the_staged_job() -> None:
    at_start = submit_lineage(requests_path="s3://in/r.jsonl", models=JOB["matrix"], job=None)
    assert at_start.datasets() == ([("s3://in", "r.jsonl")], [])
    assert at_start.job == {
        "stage": "submit",
        "models": [
            {"model": "claude-haiku-4-5", "label": "haiku"},
            {"model": "claude-sonnet-4-5", "label": "sonnet"},
        ],
    }
    done = submit_lineage(requests_path="s3://in/r.jsonl", models=None, job=JOB)
    assert done.datasets()[1] == [("s3://staging", "dag/run/submit/bb483711ce9f5c96")]
    assert done.job is not None
    assert done.job["batchIds"] == ["msgbatch_a", "msgbatch_b"]
    assert done.job["requestCounts"] == {"total": 4, "sent": 3, "rejected": 1, "fromCache": 1}
    assert done.job["models"] == [
        {
            "model": "claude-haiku-4-5",
            "label": "haiku",
            "requests": 2,
            "estimatedCostUsd": 0.1,
            "worstCaseCostUsd": 0.2,
        }
    ]
    assert (done.job["estimatedCostUsd"], done.job["worstCaseCostUsd"]) == (0.5, 0.9)
    assert "SECRET PROMPT" not in json.dumps([at_start.job, done.job])


def test_inline_requests_have_no_input_dataset_and_temporary_staging_no_output() -> None:
    lineage = submit_lineage(requests_path=None, models=None, job={**JOB, "job_dir": ""})
    assert lineage.datasets() == ([], [])
    assert lineage.job is not None and lineage.job["jobId"] == "bb483711ce9f5c96"


MANIFEST: dict[str, Any] = {
    "job_id": "bb483711ce9f5c96",
    "anthropic_version": "2023-06-01",
    "counts": {"succeeded": 3, "errored": 1, "canceled": 0, "expired": 0},
    "usage_by_model": {
        "claude-haiku-4-5": {"requests": 4, "input_tokens": 10, "output_tokens": 5},
    },
    "cost_usd": 0.25,
    "cost_complete": True,
    "batch_ids": ["msgbatch_a", "msgbatch_b"],
    "files": {"succeeded": "s3://out/run/succeeded.jsonl", "errored": "s3://out/run/errored.jsonl"},
}


def test_fetch_reports_the_job_folder_in_and_every_published_file_out() -> None:
    at_start = fetch_lineage(job=JOB, manifest=None)
    assert at_start.datasets() == ([("s3://staging", "dag/run/submit/bb483711ce9f5c96")], [])
    assert at_start.job is not None and at_start.job["stage"] == "fetch"
    assert at_start.job["batchIds"] == ["msgbatch_a", "msgbatch_b"]
    done = fetch_lineage(job=json.dumps(JOB), manifest=MANIFEST)  # as a template renders it
    assert done.datasets()[1] == [
        ("s3://out", "run/succeeded.jsonl"),
        ("s3://out", "run/errored.jsonl"),
    ]
    assert done.job is not None
    assert done.job["costUsd"] == 0.25 and done.job["estimatedCostUsd"] == 0.5
    assert done.job["usage"] == {
        "inputTokens": 10,
        "outputTokens": 5,
        "cacheReadInputTokens": 0,
        "cacheWriteTokens": 0,
    }
    assert done.job["requestCounts"] == MANIFEST["counts"]


def test_fetch_of_plain_batch_ids_names_them_and_no_input() -> None:
    lineage = fetch_lineage(job="msgbatch_a, msgbatch_b", manifest=None)
    assert lineage.datasets() == ([], [])
    assert lineage.job == {"stage": "fetch", "batchIds": ["msgbatch_a", "msgbatch_b"]}


def test_evaluate_reports_results_in_and_its_files_out() -> None:
    at_start = evaluate_lineage(results=MANIFEST, manifest=None, summary=None)
    assert at_start.datasets()[0] == [
        ("s3://out", "run/succeeded.jsonl"),
        ("s3://out", "run/errored.jsonl"),
    ]
    # A results folder is read when the task runs, not when it starts.
    assert evaluate_lineage(results="s3://out/run", manifest=None, summary=None).datasets() == (
        [],
        [],
    )
    summary = {
        "models": {"claude-haiku-4-5": {"requests": 4, "pass_rate": 0.5, "cost_usd": 0.25}},
        "totals": {"scored": 3, "passed": 2, "pass_rate": 0.5, "cost_usd": 0.25},
        "gate": {"violations": ["claude-haiku-4-5: 0.5 < 0.9"]},
        "files": {
            "manifest": "s3://out/run/manifest.json",
            "scores": "s3://out/run/scores.jsonl",
            "summary": "s3://out/run/summary.json",
            "report": "s3://out/run/report.html",
        },
    }
    done = evaluate_lineage(results="s3://out/run", manifest=MANIFEST, summary=summary)
    assert [n for _, n in done.datasets()[1]] == [
        "run/scores.jsonl",
        "run/summary.json",
        "run/report.html",
    ]
    assert done.job is not None
    assert done.job["models"][0]["passRate"] == 0.5
    assert done.job["evaluation"]["thresholdsMet"] is False


def test_operators_answer_the_provider_at_each_moment() -> None:
    submit = SubmitBatchOperator(task_id="s", requests_path="gs://in/r.jsonl")
    start = submit.get_openlineage_facets_on_start()
    assert start is not None
    assert [(d.namespace, d.name) for d in start.inputs] == [("gs://in", "r.jsonl")]
    assert start.outputs == []
    submit.keep_for_lineage("job", JOB)
    done = submit.get_openlineage_facets_on_complete(None)
    assert done is not None
    assert [d.name for d in done.outputs] == ["dag/run/submit/bb483711ce9f5c96"]
    assert done.run_facets[FACET_KEY].batchIds == ["msgbatch_a", "msgbatch_b"]

    fetch = FetchResultsOperator(task_id="f", job=JOB, destination="s3://out/run")
    fetch.keep_for_lineage("manifest", MANIFEST)
    failed = fetch.get_openlineage_facets_on_failure(None)
    assert failed is not None and len(failed.outputs) == 2

    evaluate = EvaluateResultsOperator(task_id="e", results=MANIFEST, scorer="exact_match")
    start = evaluate.get_openlineage_facets_on_start()
    assert start is not None and len(start.inputs) == 2
    assert start.run_facets[FACET_KEY].costUsd == 0.25

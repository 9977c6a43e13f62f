"""A fetch never publishes results that are not the job's: a batch whose custom_ids are not
the ones the job staged for it (an adopted batch that was another job's) is replaced by the
job's own requests, and only those results are published."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.operators.conftest import DagRunner, make_requests


def test_a_foreign_batch_is_replaced_by_the_jobs_own_requests(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    jobs = dag_runner.run(
        """
        mine = SubmitBatchOperator(task_id="mine", requests=MINE)
        theirs = SubmitBatchOperator(task_id="theirs", requests=THEIRS)
        """,
        MINE=make_requests(5, prefix="mine"),
        THEIRS=make_requests(5, prefix="theirs"),
    )
    assert jobs.state == "success", jobs.states
    mine: dict[str, Any] = jobs.xcom("mine")
    theirs = jobs.xcom("theirs")["batches"][0]["id"]
    # What a wrong adoption leaves in the descriptor: our shard, another job's batch.
    mine["batches"][0]["id"] = theirs
    mine["batches"][0]["adopted"] = True
    dag_runner.emulator.wait_ended(theirs)

    result = dag_runner.run(
        """
        FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS, poke_interval=0.05)
        """,
        JOB=mine,
    )
    assert result.state == "success", result.states
    out = capfd.readouterr().out
    assert f"batch {theirs} does not hold the requests job {mine['job_id']}" in out
    lines = [
        json.loads(x) for x in (dag_runner.results / "results.jsonl").read_bytes().splitlines()
    ]
    assert sorted(x["custom_id"] for x in lines) == [f"mine{i}" for i in range(5)]
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["attempts"][0]["replaced"] == [theirs]
    [replacement] = manifest["batch_ids"]
    received = [r["custom_id"] for r in dag_runner.emulator.admin.requests(replacement)]
    assert sorted(received) == [f"mine{i}" for i in range(5)]
    assert dag_runner.emulator.admin.batch(theirs)["cancel_initiated_at"] is None  # left alone

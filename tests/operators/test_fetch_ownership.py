"""A fetch never publishes results that are not the job's: a batch whose custom_ids are not
the ones the job staged for it (an adopted batch that was another job's) is replaced by the
job's own requests, and only those results are published. And a destination is one run's
(``jobs/_owner``): a retry of that run takes up its own claim, a claim of a run that may go
on holds, one of a run that is over does not."""

from __future__ import annotations

import json
from pathlib import Path
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


RETRIED_FETCH = """
def clear_faults(context):
    import httpx

    httpx.patch(EMULATOR + "/_emulator/config", json={"faults": {}}).raise_for_status()

submit = SubmitBatchOperator(task_id="submit", requests=REQS)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(
    task_id="fetch", job=submit.output, destination=RESULTS, download_tries=1,
    retries=1, retry_delay=timedelta(0), on_retry_callback=clear_faults,
)
submit >> wait >> fetch
"""


def test_a_retry_of_the_same_run_takes_up_its_own_claim_and_publishes(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    # Try 1 claims the destination, then every read of the results breaks (a transient
    # failure: retried); the retry callback mends the API; try 2 must find the claim its own.
    dag_runner.emulator.configure(faults={"results": {"rate_drop": 1.0}})
    result = dag_runner.run(
        RETRIED_FETCH, REQS=make_requests(4), EMULATOR=dag_runner.emulator.base_url
    )
    assert result.state == "success", result.states
    assert result.tries["fetch"] == 2
    out = capfd.readouterr().out
    assert "could not read the results of batch" in out
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["lines"] == 4
    assert manifest["run"] == {
        "dag_id": result.dag_id,
        "run_id": result.run_id,
        "task_id": "fetch",
        "map_index": -1,
    }
    assert not (dag_runner.results / "owner.json").exists()


def _claim(folder: Path, dag_id: str, run_id: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    claim = {"run": {"dag_id": dag_id, "run_id": run_id, "task_id": "fetch"}, "job_id": "x"}
    (folder / "owner.json").write_text(json.dumps({**claim, "claimed_at": "2026-03-01T00:00"}))


PIPELINE = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
submit >> wait >> fetch
"""


def test_a_claim_holds_the_destination_while_its_run_may_go_on(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    # A claim of a run Airflow cannot tell is over (here: one it does not know) holds.
    _claim(dag_runner.results, "other_dag", "scheduled__2026-03-01")
    held = dag_runner.run(PIPELINE, REQS=make_requests(2))
    assert held.states["submit"] == "failed" and held.tries["submit"] == 1
    assert dag_runner.emulator.admin.create_calls() == 0
    out = capfd.readouterr().out
    assert (
        f"destination file://{dag_runner.results} is claimed by another run "
        "(dag_id='other_dag', run_id='scheduled__2026-03-01', task_id='fetch'), whose fetch "
        "started at 2026-03-01T00:00 and has not published there"
    ) in out
    assert f"delete {dag_runner.results / 'owner.json'}" in out.replace("file://", "")

    # A claim of a run that is over (the failed run above claimed nothing; this one did)
    # does not hold: the next run takes the destination over.
    _claim(dag_runner.results, held.dag_id, held.run_id)
    taken = dag_runner.run(PIPELINE, REQS=make_requests(2))
    assert taken.state == "success", taken.states
    assert f"was claimed by run dag_id='{held.dag_id}', run_id='{held.run_id}'" in (
        capfd.readouterr().out
    )
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["run"]["run_id"] == taken.run_id


def test_the_fetch_refuses_another_runs_folder_before_it_resends_anything(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    # Every request ends errored with a retryable type: the fetch would resend them all.
    dag_runner.emulator.configure(result_errors={"overloaded_error": 1.0})
    jobs = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        """,
        REQS=make_requests(3),
    )
    assert jobs.state == "success", jobs.states
    folder = dag_runner.results
    folder.mkdir(parents=True)
    theirs = {"dag_id": "nightly", "run_id": "scheduled__2026-03-01", "task_id": "fetch"}
    (folder / "manifest.json").write_text(
        json.dumps({"job_id": "j", "run": theirs, "timings": {"fetched_at": "yesterday"}})
    )
    creates = dag_runner.emulator.admin.create_calls()
    result = dag_runner.run(
        """
        FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS, resubmit_failed=True,
            poke_interval=0.05, retries=2, retry_delay=timedelta(0))
        """,
        JOB=jobs.xcom("submit"),
    )
    assert result.states["fetch"] == "failed" and result.tries["fetch"] == 1
    assert dag_runner.emulator.admin.create_calls() == creates  # nothing resent
    out = capfd.readouterr().out
    assert (
        "holds the results of another run (dag_id='nightly', run_id='scheduled__2026-03-01', "
        "task_id='fetch'; job j, published at yesterday)"
    ) in out
    assert "nothing was resent or published" in out
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]  # no claim either

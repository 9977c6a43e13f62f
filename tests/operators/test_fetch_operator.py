from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.operators.conftest import DagRunner, make_requests

PIPELINE = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, poke_interval=0.05, {fetch})
submit >> wait >> fetch
"""


def pipeline(fetch_args: str) -> str:
    return PIPELINE.replace("{fetch}", fetch_args)


def published(results: Path, run_id: str) -> list[str]:
    """What a failed fetch left at its destination, but for its claim (which names its run)."""
    names = sorted(p.name for p in results.iterdir()) if results.exists() else []
    if "owner.json" in names:
        assert json.loads((results / "owner.json").read_text())["run"]["run_id"] == run_id
        names.remove("owner.json")
    return names


def test_split_by_type_manifest_and_asset(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.3}, seed=7)
    reqs = make_requests(30)
    reqs[0]["params"]["model"] = "claude-no-such-model"
    result = dag_runner.run(
        pipeline(
            'destination=RESULTS, split_by_type=True, asset=Asset("eval_results", uri=RESULTS)'
        ),
        REQS=reqs,
    )
    assert result.state == "success", result.states
    files = {p.name: p.read_bytes().splitlines() for p in dag_runner.results.iterdir()}
    assert set(files) == {
        "succeeded.jsonl",
        "errored.jsonl",
        "canceled.jsonl",
        "expired.jsonl",
        "manifest.json",
    }
    manifest = json.loads(b"".join(files["manifest.json"]))
    by_type = {k.removesuffix(".jsonl"): len(v) for k, v in files.items() if k.endswith(".jsonl")}
    assert by_type == manifest["counts"]
    assert sum(by_type.values()) == 30 == manifest["lines"] == manifest["request_count"]
    errored = [json.loads(x) for x in files["errored.jsonl"]]
    types = Counter(e["result"]["error"]["error"]["type"] for e in errored)
    assert types == Counter(manifest["errors_by_type"])
    assert types["not_found_error"] == 1
    assert manifest["usage_by_model"]["claude-haiku-4-5"]["requests"] == by_type["succeeded"]
    assert manifest["cost_usd"] > 0
    assert manifest["cost_complete"] is True
    assert manifest["files"]["succeeded"].endswith("succeeded.jsonl")
    # The Asset event carries the summary, for downstream DAGs scheduled on it.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == result.dag_id, AssetEvent.source_task_id == "fetch"
            )
        ).one()
        assert event.extra["lines"] == 30
        assert event.extra["cost_usd"] == manifest["cost_usd"]


def test_resubmits_retryable_failures_and_keeps_one_line_per_request(
    dag_runner: DagRunner,
) -> None:
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.5}, seed=3)
    reqs = make_requests(40)
    reqs[5]["params"]["model"] = "claude-no-such-model"  # not_found_error: never resent
    result = dag_runner.run(
        pipeline("destination=RESULTS, resubmit_failed=True, max_attempts=4, deferrable=True"),
        REQS=reqs,
    )
    assert result.state == "success", result.states
    assert result.tries["fetch"] == 1
    lines = [
        json.loads(x) for x in (dag_runner.results / "results.jsonl").read_bytes().splitlines()
    ]
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids) == sorted(r["custom_id"] for r in reqs)  # exactly one line each
    manifest = result.xcom("fetch")
    attempts = manifest["attempts"]
    assert len(attempts) >= 2
    first_resent = attempts[0]["resubmitted_next"]
    assert set(first_resent) == {"overloaded_error"}
    # The attempts' batches hold only the resent requests, never the invalid one.
    admin = dag_runner.emulator.admin
    for attempt in attempts[1:]:
        for batch in attempt["batches"]:
            sent = {r["custom_id"] for r in admin.requests(batch["id"])}
            assert "r5" not in sent
    assert manifest["errors_by_type"].get("not_found_error") == 1
    assert manifest["superseded_lines"] == sum(
        sum(a["resubmitted_next"].values()) for a in attempts
    )
    # Every resent request's final line comes from its last attempt.
    final_errors = Counter(
        line["result"]["error"]["error"]["type"]
        for line in lines
        if line["result"]["type"] == "errored"
    )
    assert final_errors["overloaded_error"] <= first_resent["overloaded_error"]


def test_xcom_output_and_its_size_limit(dag_runner: DagRunner) -> None:
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        small = FetchResultsOperator(task_id="small", job=submit.output)
        tiny = FetchResultsOperator(task_id="tiny", job=submit.output, max_xcom_bytes=200)
        submit >> [small, tiny]
        """,
        REQS=make_requests(3),
    )
    assert result.states["small"] == "success"
    assert result.states["tiny"] == "failed"
    out = result.xcom("small")
    assert len(out["results"]) == 3
    assert out["manifest"]["counts"]["succeeded"] == 3


def test_never_overwrites_another_runs_results(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    body = pipeline("destination=RESULTS")
    first = dag_runner.run(body, REQS=make_requests(2))
    assert first.state == "success"
    before = (dag_runner.results / "results.jsonl").read_bytes()
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["run"] == {
        "dag_id": first.dag_id,
        "run_id": first.run_id,
        "task_id": "fetch",
        "map_index": -1,
    }
    assert not (dag_runner.results / "owner.json").exists()  # the manifest names the run
    creates = dag_runner.emulator.admin.create_calls()
    capfd.readouterr()
    # The same input makes the same job id: only the run tells the two apart. The submit
    # refuses before anything is sent, naming the run that holds the folder.
    second = dag_runner.run(body, REQS=make_requests(2))
    assert second.states["submit"] == "failed"
    assert second.states["fetch"] == "upstream_failed"
    assert second.tries["submit"] == 1
    out = capfd.readouterr().out
    assert (
        f"holds the results of another run (dag_id='{first.dag_id}', run_id='{first.run_id}'" in out
    )
    assert f"job {manifest['job_id']}" in out and str(dag_runner.results) in out
    assert dag_runner.emulator.admin.create_calls() == creates
    assert (dag_runner.results / "results.jsonl").read_bytes() == before
    third = dag_runner.run(
        body.replace("destination=RESULTS", "destination=RESULTS, overwrite=True"),
        REQS=make_requests(2),
    )
    assert third.state == "success"
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["batch_ids"] == third.xcom("fetch")["batch_ids"]
    assert manifest["run"]["run_id"] == third.run_id


def test_not_ended_and_expired_results_give_clear_errors(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = dag_runner.emulator
    emulator.configure(paused=True)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
        submit >> fetch
        """,
        REQS=make_requests(2),
    )
    assert result.states["fetch"] == "failed"
    out = capfd.readouterr().out
    assert "not ended yet" in out
    assert "put a BatchSensor before this task" in out
    assert published(dag_runner.results, result.run_id) == []

    emulator.configure(paused=False)
    batch_id = result.xcom("submit")["batches"][0]["id"]
    emulator.wait_ended(batch_id)
    emulator.advance_clock(30 * 86400)
    again = dag_runner.run(
        """
        FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS)
        """,
        JOB=result.xcom("submit"),
    )
    assert again.states["fetch"] == "failed"
    assert "are gone" in capfd.readouterr().out


def test_broken_download_publishes_nothing(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_runner.emulator.configure(faults={"results": {"rate_drop": 1.0}})
    result = dag_runner.run(
        pipeline("destination=RESULTS, download_tries=2"), REQS=make_requests(3)
    )
    assert result.states["fetch"] == "failed"
    assert published(dag_runner.results, result.run_id) == []
    out = capfd.readouterr().out
    assert "(try 2 of 2)" in out and "2 attempt(s) failed" in out


def test_warns_when_results_are_about_to_be_deleted(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    first = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS)', REQS=make_requests(2)
    )
    job = first.xcom("submit")
    dag_runner.emulator.wait_ended(job["batches"][0]["id"])
    dag_runner.emulator.advance_clock(27 * 86400)
    # The descriptor's created_at is what the warning reads; age it as the clock moved.
    from datetime import datetime, timedelta

    for batch in job["batches"]:
        created = datetime.fromisoformat(batch["created_at"]) - timedelta(days=27)
        batch["created_at"] = created.isoformat()
    result = dag_runner.run(
        'FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS)', JOB=job
    )
    assert result.state == "success", result.states
    assert "will be deleted by the API" in capfd.readouterr().out


def test_price_overrides_and_unpriced_models(dag_runner: DagRunner) -> None:
    emulator = dag_runner.emulator
    emulator.configure(models=[*emulator.config.models, "acme-*"])
    reqs = make_requests(4)
    reqs[0]["params"]["model"] = "claude-haiku-4-5-20251001"
    reqs[1]["params"]["model"] = "claude-sonnet-4-5"
    reqs[2]["params"]["model"] = "acme-1"
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        default = FetchResultsOperator(task_id="default", job=submit.output)
        custom = FetchResultsOperator(task_id="custom", job=submit.output,
            prices={"claude-haiku-4-5": {"input": 100.0, "output": 100.0}})
        partial = FetchResultsOperator(task_id="partial", job=submit.output,
            prices=PRICE_FILE)
        submit >> [default, custom, partial]
        """,
        REQS=reqs,
        PRICE_FILE=str(_price_file(dag_runner)),
    )
    assert result.state == "success", result.states
    default = result.xcom("default")["manifest"]
    custom = result.xcom("custom")["manifest"]
    partial = result.xcom("partial")["manifest"]
    haiku = default["usage_by_model"]["claude-haiku-4-5"]
    tokens = haiku["input_tokens"] + haiku["output_tokens"]
    # Batch prices are half the table's; the dated id is priced by its alias.
    expected = 0.5 * 100.0 * tokens / 1e6
    assert custom["usage_by_model"]["claude-haiku-4-5"]["cost_usd"] == pytest.approx(expected)
    assert default["usage_by_model"]["claude-haiku-4-5-20251001"]["priced_as"] == "claude-haiku-4-5"
    # A model the table does not know is listed, never guessed.
    assert default["cost_complete"] is False
    assert default["unpriced_models"] == ["acme-1"]
    assert default["usage_by_model"]["acme-1"]["cost_usd"] is None
    assert partial["cost_usd"] > default["cost_usd"]


def _price_file(dag_runner: DagRunner) -> object:
    path = dag_runner.tmp_path / "prices.toml"
    path.write_text('[models."claude-sonnet-4-5"]\ninput = 300.0\noutput = 300.0\n')
    return path


def test_fetch_retry_reattaches_to_its_follow_up_batch(dag_runner: DagRunner) -> None:
    emulator = dag_runner.emulator
    emulator.configure(result_errors={"api_error": 0.5}, seed=2)
    first = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        submit >> wait
        """,
        REQS=make_requests(24),  # none of 24 erring at 0.5 (the batch id decides): 6e-8
    )
    assert first.state == "success", first.states
    assert first.xcom("wait")["counts"]["errored"] > 0
    # The follow-up's create succeeds but its answer is lost, and the search for it fails:
    # try 1 of the fetch dies. Try 2 must adopt that batch, not create another.
    emulator.configure(
        faults={
            "create": {"rate_drop_after": 1.0, "max_count": 1},
            "list": {"rate_500": 1.0, "max_count": 3},
        }
    )
    second = dag_runner.run(
        """
        FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS,
            resubmit_failed=True, max_attempts=2, poke_interval=0.05, retries=1,
            retry_delay=timedelta(seconds=0))
        """,
        JOB=first.xcom("submit"),
    )
    assert second.state == "success", second.states
    assert second.tries["fetch"] == 2
    assert emulator.admin.batches_created() == 2  # the job's batch and one follow-up
    manifest = second.xcom("fetch")
    assert len(manifest["attempts"]) == 2
    assert manifest["lines"] == 24


def test_missing_lines_are_detected_and_nothing_is_published(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    first = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        submit >> wait
        """,
        REQS=make_requests(4),
    )
    job = first.xcom("submit")
    job["batches"][0]["request_count"] = 5  # the API returns 4 lines where 5 were sent
    job["request_count"] = 5
    result = dag_runner.run(
        'FetchResultsOperator(task_id="fetch", job=JOB, destination=RESULTS)', JOB=job
    )
    assert result.states["fetch"] == "failed"
    assert "returned 4 result line(s) for 5 request(s); nothing was published" in (
        capfd.readouterr().out
    )
    assert published(dag_runner.results, result.run_id) == []


def test_resubmission_waiting_in_the_worker(dag_runner: DagRunner) -> None:
    # Slow enough that each follow-up is still running when the fetch first looks at it.
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.5}, latency=0.2, workers=1)
    result = dag_runner.run(
        pipeline("destination=RESULTS, resubmit_failed=True, max_attempts=3, deferrable=False"),
        REQS=make_requests(16),
    )
    assert result.state == "success", result.states
    assert result.tries["fetch"] == 1
    assert "deferred" not in result.events["fetch"]
    manifest = result.xcom("fetch")
    assert len(manifest["attempts"]) >= 2
    assert manifest["lines"] == 16


def test_resubmission_waiting_in_the_triggerer(dag_runner: DagRunner) -> None:
    # One worker at 0.2 s a request: the follow-up (about 8 requests) runs for over a second,
    # far longer than the fetch takes to create it and look at it, so the fetch must defer.
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.5}, latency=0.2, workers=1)
    result = dag_runner.run(
        pipeline("destination=RESULTS, resubmit_failed=True, max_attempts=2, deferrable=True"),
        REQS=make_requests(16),
    )
    assert result.state == "success", result.states
    assert result.tries["fetch"] == 1
    assert result.events["fetch"] == ["running", "deferred", "running", "success"]
    manifest = result.xcom("fetch")
    assert len(manifest["attempts"]) == 2
    assert manifest["lines"] == 16

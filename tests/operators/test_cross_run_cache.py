"""The cross-run cache through real DAG runs: an unchanged eval run again sends nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.operators.conftest import DagRunner

DAG = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
    defaults={"max_tokens": 16}, cache_path=CACHE)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
    destination=RESULTS + "/{{ run_id | replace(':', '-') | replace('+', '-') }}")
submit >> wait >> fetch
"""


def requests(n: int, *, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"q{i}",
            "params": {"messages": [{"role": "user", "content": f"question {i + offset}"}]},
            "metadata": {"expected": i},
        }
        for i in range(n)
    ]


def results_by_id(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    path = Path(manifest["files"]["results"].removeprefix("file://"))
    return {x["custom_id"]: x for x in map(json.loads, path.read_bytes().splitlines())}


def test_an_unchanged_eval_run_again_makes_no_create_call_and_gives_the_same_results(
    dag_runner: DagRunner, tmp_path: Path
) -> None:
    values = {
        "REQS": requests(6),
        "MODELS": ["claude-haiku-4-5", "claude-sonnet-4-5"],
        "CACHE": f"file://{tmp_path / 'cache'}",
    }
    admin = dag_runner.emulator.admin
    first = dag_runner.run(DAG, **values)
    assert first.state == "success", first.states
    assert admin.create_calls() == 2
    one = first.xcom("fetch")
    assert one["cache"]["hits"] == 0 and one["cache"]["stored"] == 12

    second = dag_runner.run(DAG, **values)
    assert second.state == "success", second.states
    assert admin.create_calls() == 2  # not one more
    job = second.xcom("submit")
    assert job["batches"] == [] and job["cache"]["hits"] == 12
    two = second.xcom("fetch")
    assert two["counts"]["succeeded"] == 12 and two["lines"] == 12
    assert two["cost_usd"] == 0
    assert two["cache"]["hits"] == 12 and two["cache"]["stored"] == 0
    assert two["cache"]["cost_avoided_usd"] == one["cost_usd"]
    for label in values["MODELS"]:
        assert two["matrix"][label]["cross_run_cache_hits"] == 6
    old, new = results_by_id(one), results_by_id(two)
    assert old.keys() == new.keys()
    for custom_id, line in new.items():
        assert line["result"] == old[custom_id]["result"]
        assert line["metadata"] == old[custom_id]["metadata"]
        assert line["matrix"] == old[custom_id]["matrix"]
        assert line["cached_from"]["custom_id"] == custom_id


def test_only_the_requests_that_changed_are_sent(dag_runner: DagRunner, tmp_path: Path) -> None:
    cache = f"file://{tmp_path / 'cache'}"
    models = ["claude-haiku-4-5"]
    admin = dag_runner.emulator.admin
    assert dag_runner.run(DAG, REQS=requests(5), MODELS=models, CACHE=cache).state == "success"
    before = admin.requests_received()
    changed = requests(5)
    changed[2]["params"]["messages"][0]["content"] = "a new question"
    changed.append(requests(6)[5])
    run = dag_runner.run(DAG, REQS=changed, MODELS=models, CACHE=cache)
    assert run.state == "success", run.states
    assert admin.requests_received() - before == 2
    job = run.xcom("submit")
    assert job["cache"] == {**job["cache"], "hits": 4, "misses": 2}
    (batch,) = job["batches"]
    assert sorted(r["custom_id"] for r in admin.requests(batch["id"])) == ["m0_q2", "m0_q5"]
    manifest = run.xcom("fetch")
    assert manifest["lines"] == 6 and manifest["cache"]["stored"] == 2


def test_only_succeeded_results_are_reused(dag_runner: DagRunner, tmp_path: Path) -> None:
    cache = f"file://{tmp_path / 'cache'}"
    models = ["claude-haiku-4-5"]
    admin = dag_runner.emulator.admin
    # Which requests err follows the (random) batch id: at 0.5, none or all of 20 is 2e-6.
    dag_runner.emulator.configure(result_errors={"invalid_request_error": 0.5}, seed=11)
    first = dag_runner.run(DAG, REQS=requests(20), MODELS=models, CACHE=cache)
    assert first.state == "success", first.states
    errored = first.xcom("fetch")["counts"]["errored"]
    assert 0 < errored < 20
    dag_runner.emulator.configure(result_errors={})
    before = admin.requests_received()
    second = dag_runner.run(DAG, REQS=requests(20), MODELS=models, CACHE=cache)
    assert second.state == "success", second.states
    assert admin.requests_received() - before == errored  # only the errored ones, again
    manifest = second.xcom("fetch")
    assert manifest["counts"] == {"succeeded": 20, "errored": 0, "canceled": 0, "expired": 0}
    assert manifest["cache"]["hits"] == 20 - errored and manifest["cache"]["stored"] == errored


def test_a_cache_needs_shared_staging(dag_runner: DagRunner, tmp_path: Path) -> None:
    dag_runner.monkeypatch.delenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH")
    result = dag_runner.run(
        """
        SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS, cache_path=CACHE,
            defaults={"max_tokens": 4})
        """,
        REQS=requests(2),
        MODELS=["claude-haiku-4-5"],
        CACHE=f"file://{tmp_path / 'cache'}",
    )
    assert result.states["submit"] == "failed"
    assert dag_runner.emulator.admin.create_calls() == 0


def test_a_plain_job_uses_the_cache_too(dag_runner: DagRunner, tmp_path: Path) -> None:
    body = """
    submit = SubmitBatchOperator(task_id="submit", requests=REQS, cache_path=CACHE,
        defaults={"model": "claude-haiku-4-5", "max_tokens": 16})
    wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
    fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
        destination=RESULTS + "/{{ run_id | replace(':', '-') | replace('+', '-') }}")
    submit >> wait >> fetch
    """
    values = {"REQS": requests(8), "CACHE": f"file://{tmp_path / 'cache'}"}
    first = dag_runner.run(body, **values)
    assert first.state == "success", first.states
    second = dag_runner.run(body, **values)
    assert second.state == "success", second.states
    assert dag_runner.emulator.admin.create_calls() == 1
    manifest = second.xcom("fetch")
    assert manifest["cache"]["hits"] == 8 and "matrix" not in manifest
    assert results_by_id(manifest).keys() == {f"q{i}" for i in range(8)}
    assert results_by_id(manifest)["q3"]["metadata"] == {"expected": 3}


def test_answers_of_one_endpoint_never_answer_another(
    dag_runner: DagRunner, tmp_path: Path
) -> None:
    """The path from the emulator to the real API: the same DAG and cache_path pointed at
    another endpoint sends everything there and publishes none of the first one's answers."""
    from airflow_batches.emulator.testing import serve_emulator

    values = {
        "REQS": requests(4),
        "MODELS": ["claude-haiku-4-5"],
        "CACHE": f"file://{tmp_path / 'cache'}",
    }
    first = dag_runner.run(DAG, **values)
    assert first.state == "success", first.states
    one = first.xcom("fetch")
    assert one["cache"]["stored"] == 4
    assert one["cache"]["endpoint"] == f"{dag_runner.emulator.base_url}/"

    with serve_emulator(data_dir=tmp_path / "other") as other:
        dag_runner.emulator = other
        dag_runner.set_connection()
        second = dag_runner.run(DAG, **values)
        assert second.state == "success", second.states
        assert other.admin.create_calls() == 1
        assert other.admin.requests_received() == 4
        job = second.xcom("submit")
        assert (job["cache"]["hits"], job["cache"]["misses"]) == (0, 4)
        two = second.xcom("fetch")
        assert two["cache"]["endpoint"] == f"{other.base_url}/"
        assert all("cached_from" not in line for line in results_by_id(two).values())
        # Each endpoint now finds its own answers: the second run again is all hits.
        third = dag_runner.run(DAG, **values)
        assert third.state == "success", third.states
        assert other.admin.create_calls() == 1
        assert third.xcom("fetch")["cache"]["hits"] == 4

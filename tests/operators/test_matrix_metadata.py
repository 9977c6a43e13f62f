"""The model matrix and request metadata through real DAG runs against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.operators.conftest import DagRunner

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]


def eval_requests(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"q{i}",
            "params": {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}]},
            "metadata": {"expected": str(2 * i), "row": i},
        }
        for i in range(n)
    ]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def test_a_matrix_job_sends_every_request_to_every_model_and_joins_metadata(
    dag_runner: DagRunner,
) -> None:
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
            defaults={"max_tokens": 16})
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
            split_by_model=True)
        submit >> wait >> fetch
        """,
        REQS=eval_requests(7),
        MODELS=MODELS,
    )
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert job["request_count"] == 21
    assert [m["label"] for m in job["matrix"]] == MODELS
    # Each model's requests go in batches of their own.
    assert len(job["batches"]) == 3
    admin = dag_runner.emulator.admin
    for i, batch in enumerate(job["batches"]):
        sent = admin.requests(batch["id"])
        assert {r["params"]["model"] for r in sent} == {MODELS[i]}
        assert sorted(r["custom_id"] for r in sent) == sorted(f"m{i}_q{k}" for k in range(7))
        assert all("metadata" not in r for r in sent)  # never sent
    manifest = result.xcom("fetch")
    assert list(manifest["matrix"]) == MODELS
    for i, label in enumerate(MODELS):
        entry = manifest["matrix"][label]
        assert entry["requests"] == 7 and entry["counts"]["succeeded"] == 7
        assert entry["batch_ids"] == [job["batches"][i]["id"]]
        assert entry["cost_usd"] > 0 and entry["seconds_to_end"] >= 0
        lines = lines_of(dag_runner.results / f"results.{label}.jsonl")
        assert len(lines) == 7
        for line in lines:
            assert line["matrix"] == {"model": label, "custom_id": line["custom_id"][3:]}
            row = int(line["matrix"]["custom_id"][1:])
            assert line["metadata"] == {"expected": str(2 * row), "row": row}
            assert line["result"]["message"]["model"] == label
    assert manifest["metadata_lines"] == 21
    assert not (dag_runner.results / "results.jsonl").exists()


def test_metadata_from_a_jsonl_file_survives_follow_up_batches(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.4}, seed=3)
    path = dag_runner.tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in eval_requests(20)))
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests_path=PATH,
            defaults={"model": "claude-haiku-4-5", "max_tokens": 16})
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
            resubmit_failed=True, max_attempts=5, poke_interval=0.05)
        submit >> wait >> fetch
        """,
        PATH=str(path),
    )
    assert result.state == "success", result.states
    manifest = result.xcom("fetch")
    assert len(manifest["attempts"]) >= 2  # some requests went out again in a new batch
    resent = manifest["attempts"][1]["batches"][0]["id"]
    lines = lines_of(dag_runner.results / "results.jsonl")
    assert len(lines) == 20 and manifest["metadata_lines"] == 20
    for line in lines:
        row = int(line["custom_id"][1:])
        assert line["metadata"] == {"expected": str(2 * row), "row": row}
    sent_again = {r["custom_id"] for r in dag_runner.emulator.admin.requests(resent)}
    assert sent_again and all(
        "metadata" not in r for r in dag_runner.emulator.admin.requests(resent)
    )
    assert "matrix" not in lines[0]


def test_metadata_needs_shared_staging_and_nothing_is_sent_without_it(
    dag_runner: DagRunner,
) -> None:
    dag_runner.monkeypatch.delenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH")
    result = dag_runner.run(
        """
        SubmitBatchOperator(task_id="submit", requests=REQS, defaults={"model": "m",
            "max_tokens": 4})
        """,
        REQS=eval_requests(3),
    )
    assert result.states["submit"] == "failed"
    assert dag_runner.emulator.admin.create_calls() == 0

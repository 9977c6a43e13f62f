"""The model matrix and request metadata through real DAG runs against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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


def test_a_matrix_job_s_follow_ups_keep_one_model_per_batch(dag_runner: DagRunner) -> None:
    """Resent failures go out per model, so each model's batches, follow-ups and end time
    stay its own (docs/evals.md)."""
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.5}, seed=5)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
            defaults={"max_tokens": 16})
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
            resubmit_failed=True, max_attempts=6, poke_interval=0.05)
        submit >> wait >> fetch
        """,
        REQS=eval_requests(12),
        MODELS=MODELS,
    )
    assert result.state == "success", result.states
    manifest = result.xcom("fetch")
    admin = dag_runner.emulator.admin
    follow_ups = [b["id"] for a in manifest["attempts"][1:] for b in a["batches"]]
    # At 0.5 per request, 36 requests with no failure or all resent in one model: ~1e-10.
    assert len(follow_ups) >= 2
    label_of = {b: label for label, m in manifest["matrix"].items() for b in m["batch_ids"]}
    for batch_id in follow_ups:
        models = {r["params"]["model"] for r in admin.requests(batch_id)}
        assert len(models) == 1, (batch_id, models)
        prefixes = {r["custom_id"].split("_")[0] for r in admin.requests(batch_id)}
        assert prefixes == {f"m{MODELS.index(models.pop())}"}
        assert label_of[batch_id] == MODELS[int(prefixes.pop()[1:])]
    # Every batch is one model's, follow-ups whose every line was resent again included, so
    # each model's time to end runs from its own first batch to its own last.
    first = manifest["attempts"][0]["batches"]
    for i, label in enumerate(MODELS):
        entry = manifest["matrix"][label]
        assert entry["requests"] == 12
        assert first[i]["id"] in entry["batch_ids"]
    assert sorted(label_of) == sorted(manifest["batch_ids"])


def test_labels_that_share_a_file_name_are_refused_before_anything_is_sent(
    dag_runner: DagRunner,
) -> None:
    # Rendered at run time (a template), so the check runs when the task starts.
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS,
            models="{{ params.models | tojson }}", params={"models": MODELS},
            defaults={"max_tokens": 16})
        """,
        REQS=eval_requests(3),
        MODELS=[
            {"model": "claude-haiku-4-5", "label": "Haiku 4.5"},
            {"model": "claude-haiku-4-5", "label": "haiku/4.5", "params": {"system": "x"}},
        ],
    )
    assert result.states["submit"] == "failed"
    assert dag_runner.emulator.admin.create_calls() == 0


def test_labels_that_share_a_file_name_fail_the_dag_file(dag_runner: DagRunner) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    with pytest.raises(AssertionError, match="differ in more than case"):
        dag_runner.run(
            """
            SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
                defaults={"max_tokens": 16})
            """,
            REQS=eval_requests(3),
            MODELS=[
                "claude-haiku-4-5",
                {"model": "claude-sonnet-4-5", "label": "Claude-Haiku-4-5"},
            ],
        )
    bag = DagBag(str(dag_runner.dags_folder))
    (error,) = bag.import_errors.values()
    assert "models[1]: label 'Claude-Haiku-4-5' and models[0]'s 'claude-haiku-4-5'" in error

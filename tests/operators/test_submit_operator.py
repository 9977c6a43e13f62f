from __future__ import annotations

import gzip
import json

import pytest

from tests.operators.conftest import DagRunner, make_requests


def test_xcom_input_defaults_and_connection_model(dag_runner: DagRunner) -> None:
    dag_runner.set_connection(default_model="claude-sonnet-4-5")
    result = dag_runner.run(
        """
        @task
        def build():
            return [
                {"custom_id": "keep-MY_id-1",
                 "params": {"messages": [{"role": "user", "content": "a"}]}},
                {"custom_id": "b", "params": {"model": "claude-haiku-4-5", "max_tokens": 5,
                 "system": "own", "messages": [{"role": "user", "content": "b"}],
                 "tools": [{"name": "t", "input_schema": {"type": "object"}}]}},
            ]
        submit = SubmitBatchOperator(task_id="submit", requests=build(),
            defaults={"max_tokens": 64, "system": [{"type": "text", "text": "shared"}]})
        """
    )
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert job["request_count"] == 2
    assert "keep-MY_id-1" not in json.dumps(job)  # ids and counts, never the requests
    assert "messages" not in json.dumps(job)
    received = {
        r["custom_id"]: r["params"]
        for r in dag_runner.emulator.admin.requests(job["batches"][0]["id"])
    }
    assert received["keep-MY_id-1"]["model"] == "claude-sonnet-4-5"
    assert received["keep-MY_id-1"]["max_tokens"] == 64
    assert received["keep-MY_id-1"]["system"] == [{"type": "text", "text": "shared"}]
    assert received["b"]["model"] == "claude-haiku-4-5"
    assert received["b"]["system"] == "own"
    assert received["b"]["tools"] == [{"name": "t", "input_schema": {"type": "object"}}]


def test_jsonl_file_input_gzip_and_sharding(dag_runner: DagRunner) -> None:
    path = dag_runner.tmp_path / "in" / "requests.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wb") as out:
        for item in make_requests(10):
            out.write(json.dumps(item).encode() + b"\n")
        out.write(b"\n")  # blank lines are ignored
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests_path=INPUT,
            max_requests_per_batch=4)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
        submit >> wait >> fetch
        """,
        INPUT=f"file://{path}",
    )
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert [b["request_count"] for b in job["batches"]] == [4, 4, 2]
    assert dag_runner.emulator.admin.batches_created() == 3
    manifest = result.xcom("fetch")
    assert manifest["lines"] == 10
    assert manifest["complete"] is True
    assert len(manifest["batch_ids"]) == 3


def test_invalid_input_sends_nothing_and_names_each_problem(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    reqs = make_requests(3)
    reqs[1]["params"]["max_tokens"] = 0
    reqs[2]["custom_id"] = "r0"
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS)',
        REQS=reqs,
    )
    assert result.states["submit"] == "failed"
    assert dag_runner.emulator.admin.create_calls() == 0
    out = capfd.readouterr().out
    assert "request 1 (custom_id 'r1'): params.max_tokens: must be >= 1" in out
    assert "request 2 (custom_id 'r0'): custom_id: is used by an earlier request" in out


def test_skip_invalid_submits_the_rest_and_reports(dag_runner: DagRunner) -> None:
    reqs = make_requests(4)
    reqs[3]["params"]["stream"] = True
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, on_invalid="skip")',
        REQS=reqs,
    )
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert job["request_count"] == 3
    assert job["rejected_count"] == 1
    rejected = dag_runner.staging.rglob("rejected.jsonl")
    lines = [json.loads(x) for p in rejected for x in p.read_text().splitlines()]
    assert lines == [
        {
            "location": "request 3",
            "custom_id": "r3",
            "field": "params.stream",
            "message": "streaming is not allowed in a batch request",
        }
    ]


def test_task_retry_reattaches_instead_of_creating_again(dag_runner: DagRunner) -> None:
    # Try 1: the create succeeds but its answer is lost, and the search for it fails too,
    # so the task fails. Try 2 finds the batch in the list and adopts it.
    dag_runner.emulator.configure(
        faults={
            "create": {"rate_drop_after": 1.0, "max_count": 1},
            "list": {"rate_500": 1.0, "max_count": 3},
        }
    )
    result = dag_runner.run(
        """
        SubmitBatchOperator(task_id="submit", requests=REQS, retries=1,
            retry_delay=timedelta(seconds=0))
        """,
        REQS=make_requests(5),
    )
    assert result.state == "success", result.states
    assert result.tries["submit"] == 2
    assert dag_runner.emulator.admin.batches_created() == 1
    job = result.xcom("submit")
    assert job["batches"][0]["id"] == dag_runner.emulator.admin.batches()[0]["id"]


def test_templated_text_inputs_are_understood(dag_runner: DagRunner) -> None:
    result = dag_runner.run(
        """
        @task
        def build():
            return REQS
        reqs = build()
        submit = SubmitBatchOperator(task_id="submit",
            requests="{{ ti.xcom_pull(task_ids='build') | tojson }}")
        wait = BatchSensor(task_id="wait", poke_interval=0.05,
            job="{{ ti.xcom_pull(task_ids='submit') }}")
        reqs >> submit >> wait
        """,
        REQS=make_requests(3),
    )
    assert result.state == "success", result.states
    assert result.xcom("wait")["counts"]["succeeded"] == 3


def test_templated_text_is_read_as_strictly_as_a_file(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    ambiguous = (
        '[{"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 5, '
        '"max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}}]'
    )
    repr_text = repr(make_requests(2))  # what Jinja renders for a list of dicts, not JSON
    result = dag_runner.run(
        """
        strict = SubmitBatchOperator(task_id="strict", requests=AMBIGUOUS)
        python = SubmitBatchOperator(task_id="python", requests=REPR)
        """,
        AMBIGUOUS=ambiguous,
        REPR=repr_text,
    )
    assert result.states == {"strict": "failed", "python": "success"}
    out = capfd.readouterr().out
    assert "request 0" in out and "max_tokens" in out and "duplicate" in out.lower()
    assert dag_runner.emulator.admin.batches_created() == 1  # only the valid one was sent

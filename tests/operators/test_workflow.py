from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.operators.conftest import DagRunner


def test_submit_wait_fetch_end_to_end(dag_runner: DagRunner) -> None:
    reqs = [
        {"custom_id": f"r{i}", "params": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        for i in range(12)
    ]
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS,
            defaults={"model": "claude-haiku-4-5", "max_tokens": 40})
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05, deferrable=True)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
            poke_interval=0.05)
        submit >> wait >> fetch
        """,
        REQS=reqs,
    )
    results = dag_runner.results
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert job["request_count"] == 12
    assert len(job["batches"]) == 1
    lines = (results / "results.jsonl").read_bytes().splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in lines) == sorted(f"r{i}" for i in range(12))
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["counts"]["succeeded"] == 12
    assert manifest["cost_usd"] > 0
    assert manifest == result.xcom("fetch")
    assert dag_runner.emulator.admin.batches_created() == 1
    assert not [p for p in Path(results).iterdir() if p.name.startswith(".")]


def test_the_api_key_never_shows_in_logs_or_xcom(
    airflow_db: None,
    emulator_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_batches.emulator.config import EmulatorConfig

    secret = "sk-ant-api03-TOPSECRET-0123456789abcdef"
    emulator = emulator_factory(EmulatorConfig(workspaces={"default": [secret]}, latency=0.02))
    runner = DagRunner(emulator, tmp_path, monkeypatch)
    result = runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05, deferrable=True)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
        bad = SubmitBatchOperator(task_id="bad", requests=[{"custom_id": "x"}])
        submit >> wait >> fetch
        """,
        REQS=[
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": "m",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "q"}],
                },
            }
            for i in range(5)
        ],
    )
    assert result.states["fetch"] == "success"
    assert result.states["bad"] == "failed"
    captured = capfd.readouterr()
    assert "Validated 5 request(s)" in captured.out  # the task logs were captured...
    assert secret not in captured.out + captured.err  # ...and the key is in none of them
    assert secret not in json.dumps(result.xcoms)
    for path in runner.results.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()

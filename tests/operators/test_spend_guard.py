"""SubmitBatchOperator's pre-flight: model rules, the estimate and max_cost_usd, in real DAGs."""

from __future__ import annotations

import pytest

from airflow_batches.api import Client
from airflow_batches.emulator.testing import RunningEmulator
from tests.operators.conftest import DagRunner, make_requests

API_ENDPOINTS = ("create", "retrieve", "list", "cancel", "delete", "results")


def no_http_calls(emulator: RunningEmulator) -> bool:
    stats = emulator.admin.stats()
    calls = sum(stats["endpoints"][e]["calls"] for e in API_ENDPOINTS)
    return calls == 0 and stats["count_tokens_calls"] == 0 and emulator.admin.create_calls() == 0


def test_max_cost_usd_refuses_before_any_create(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    reqs = make_requests(5, model="claude-opus-5-5", max_tokens=2000)
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, max_cost_usd=0.001)',
        REQS=reqs,
    )
    assert result.states["submit"] == "failed"
    assert no_http_calls(dag_runner.emulator)
    out = capfd.readouterr().out
    assert "CostLimitExceededError" in out
    assert "the job's expected cost is over max_cost_usd (expected $" in out
    assert "max_cost_usd $0.0010" in out
    assert "claude-opus-5-5: 5 request(s)" in out


def test_worst_case_policy_fail_refuses_and_warn_submits(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    reqs = make_requests(4, model="claude-sonnet-5-5", max_tokens=1000)
    # Expected (output at half of max_tokens) ~ $0.0101, worst case ~ $0.0201.
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, max_cost_usd=0.015, '
        'worst_case="fail")',
        REQS=reqs,
    )
    assert result.states["submit"] == "failed"
    assert no_http_calls(dag_runner.emulator)
    assert "worst_case='fail'" in capfd.readouterr().out

    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, max_cost_usd=0.015)', REQS=reqs
    )
    assert result.state == "success", result.states
    assert "the job's worst-case cost is over max_cost_usd" in capfd.readouterr().out
    estimate = result.xcom("submit")["estimate"]
    assert estimate["requests"] == 4
    assert 0 < estimate["expected_usd"] <= 0.015 < estimate["worst_usd"]
    assert dag_runner.emulator.admin.create_calls() == 1


def test_refused_requests_make_zero_http_calls_and_the_emulator_errors_them_when_sent(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    reqs = make_requests(3, model="claude-opus-5-5")
    reqs[0]["params"]["tool_choice"] = {"type": "any"}
    reqs[0]["params"]["tools"] = [{"name": "t", "input_schema": {"type": "object"}}]
    reqs[2]["params"]["thinking"] = {"type": "disabled"}
    result = dag_runner.run('SubmitBatchOperator(task_id="submit", requests=REQS)', REQS=reqs)
    assert result.states["submit"] == "failed"
    assert no_http_calls(dag_runner.emulator)
    out = capfd.readouterr().out
    assert "2 invalid request(s)" in out
    assert "request 0 (custom_id 'r0'): params.tool_choice.type: " in out
    assert "request 2 (custom_id 'r2'): params.thinking.type: " in out
    assert "not supported on claude-opus-5-5" in out

    # With the rules switched off the job is sent, and the emulator errors the same requests.
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, '
        'disabled_model_rules=["forced_tool_use", "claude-opus-5-5:thinking_disabled"])',
        REQS=reqs,
    )
    assert result.state == "success", result.states
    [batch] = result.xcom("submit")["batches"]
    emulator = dag_runner.emulator
    emulator.wait_ended(batch["id"])
    with Client(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        by_id = {line.custom_id: line.result for line in client.results(batch["id"])}
    assert by_id["r1"].type == "succeeded"
    for custom_id in ("r0", "r2"):
        assert by_id[custom_id].type == "errored"
        assert by_id[custom_id].error.error.type == "invalid_request_error"
        assert "not supported on claude-opus-5-5" in by_id[custom_id].error.error.message


def test_estimate_in_the_descriptor_and_costs_in_the_manifest(dag_runner: DagRunner) -> None:
    reqs = make_requests(6, model="claude-sonnet-5-5", max_tokens=64)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS, max_cost_usd=1.0,
            expected_output_tokens=40, count_tokens_sample=2)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
        submit >> wait >> fetch
        """,
        REQS=reqs,
    )
    assert result.state == "success", result.states
    estimate = result.xcom("submit")["estimate"]
    sonnet = estimate["models"]["claude-sonnet-5-5"]
    assert sonnet["count_ratio"] == 1.0  # the emulator counts as it bills
    assert sonnet["tokens"]["output"] == 6 * 40
    assert dag_runner.emulator.admin.stats()["count_tokens_calls"] == 2
    manifest = result.xcom("fetch")
    assert manifest["standard_cost_usd"] == pytest.approx(2 * manifest["cost_usd"], abs=1e-6)
    assert manifest["saving_usd"] == pytest.approx(manifest["cost_usd"], abs=1e-6)
    model = manifest["usage_by_model"]["claude-sonnet-5-5"]
    assert model["standard_cost_usd"] == pytest.approx(2 * model["cost_usd"], abs=1e-6)
    assert model["price_checked"] == "2026-12-01"
    assert manifest["cost_complete"] is True
    assert manifest["cost_warnings"] == []

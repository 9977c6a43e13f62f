"""EvaluateResultsOperator in real DAG runs: scores, the summary, run over run, thresholds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.evalset import eval_requests, solve
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.ui._urls import report_url, run_url
from tests.operators.conftest import DagRunner, _load

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
RATES = {"claude-haiku-4-5": 0.3, "claude-sonnet-4-5": 0.0}

DAG = """
from airflow_batches.evals import by_category, exact_match, json_schema, numeric
scorer = by_category({"arithmetic": numeric(), "lookup": exact_match(),
                      "extraction": json_schema(schema_key="schema")})
submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
    defaults={"max_tokens": 64}, cache_path=CACHE)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
    destination=RESULTS + "/{{ run_id | replace(':', '-') | replace('+', '-') }}")
evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output, scorer=scorer,
    asset=Asset(name=ASSET, uri=RESULTS + "/summary"), **GATES)
submit >> wait >> fetch >> evaluate
"""


@pytest.fixture
def evals(
    airflow_db: None,
    emulator_factory: Callable[..., RunningEmulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> DagRunner:
    # The responder is chosen at start (the admin view never imports what it is sent).
    emulator = emulator_factory(
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": RATES, "seed": 7},
    )
    return DagRunner(emulator, tmp_path, monkeypatch)


def read_lines(path: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path.removeprefix("file://")).read_bytes().splitlines()]


def run(runner: DagRunner, tmp_path: Path, cache: str = "cache", **gates: Any) -> Any:
    return runner.run(
        DAG,
        REQS=eval_requests(30, seed=3),
        MODELS=MODELS,
        CACHE=f"file://{tmp_path / cache}",
        GATES=gates,
        ASSET=f"eval_summary_{abs(hash(str(tmp_path)))}",
    )


def truth(line: dict[str, Any]) -> bool:
    """Whether an answer is right, decided here from the question itself."""
    text = line["result"]["message"]["content"][0]["text"]
    expected = line["metadata"]["expected"]
    if line["metadata"]["category"] == "extraction":
        try:
            return bool(json.loads(text) == expected)
        except ValueError:
            return False
    return text == str(expected)


def test_scores_every_model_and_writes_summary_scores_and_report(
    evals: DagRunner, tmp_path: Path
) -> None:
    result = run(evals, tmp_path)
    assert result.state == "success", result.states
    summary = result.xcom("evaluate")
    manifest = result.xcom("fetch")
    folder = Path(manifest["destination"].removeprefix("file://"))
    lines = read_lines(manifest["files"]["results"])
    assert len(lines) == 60
    for label in MODELS:
        mine = [x for x in lines if x["matrix"]["model"] == label]
        right = sum(truth(x) for x in mine)
        m = summary["models"][label]
        assert (m["scored"], m["passed"]) == (30, right)
        assert m["pass_rate"] == pytest.approx(right / 30)
        assert m["cost_usd"] == pytest.approx(manifest["matrix"][label]["cost_usd"], abs=1e-6)
        assert m["cost_per_correct_usd"] == pytest.approx(m["cost_usd"] / right, rel=1e-4)
        assert set(m["categories"]) == {"arithmetic", "lookup", "extraction"}
    assert summary["models"]["claude-sonnet-4-5"]["pass_rate"] == 1.0
    assert summary["models"]["claude-haiku-4-5"]["pass_rate"] < 0.95
    scores = read_lines(str(folder / "scores.jsonl"))
    assert len(scores) == 60
    assert {(s["model"], s["custom_id"]) for s in scores} == {
        (x["matrix"]["model"], x["matrix"]["custom_id"]) for x in lines
    }
    assert json.loads((folder / "summary.json").read_text())["models"] == summary["models"]
    report = (folder / "report.html").read_text()
    assert (
        report.startswith("<!DOCTYPE html>")
        and "<svg" in report
        and "http" not in report.split("<body>")[0]
    )
    assert summary["baseline"] is None and summary["history"] == []
    assert_costs_are_the_lines(summary, manifest)
    # The links open the plugin's pages (the UI shows no file:// or s3:// link); the report's
    # location is kept for the plugin to serve, with the storage connection.
    links = link_xcoms(result.dag_id, result.run_id)
    assert links["_link_EvalReportLink"] == report_url(
        "/", result.dag_id, result.run_id, "evaluate"
    )
    assert links["_link_BatchesLink"] == run_url("/", result.dag_id, result.run_id)
    assert links["airflow_batches_eval_files"] == {"files": summary["files"], "conn_id": None}
    assert [b["url"] for b in summary["batches"]] == [
        f"{evals.emulator.base_url}/_emulator/batches/{b}" for b in manifest["batch_ids"]
    ]


COST_FIGURES = ("cost_usd", "cost_avoided_usd", "cost_complete", "prompt_cache_hit_rate")


def assert_costs_are_the_lines(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The evaluation took each model's costs from the fetch (same prices): they are what
    counting the published lines again gives."""
    from airflow_batches.api._pricing import load_price_table
    from airflow_batches.evals import Evaluation, exact_match

    assert manifest["prices_digest"] == load_price_table().digest()
    counted = Evaluation(exact_match(), load_price_table())
    for line in (
        Path(manifest["files"]["results"].removeprefix("file://")).read_bytes().split(b"\n")
    ):
        if line.strip():
            counted.add(line)
    again = counted.summary()["models"]
    for label in MODELS:
        got = {k: summary["models"][label][k] for k in COST_FIGURES}
        assert got == {k: again[label][k] for k in COST_FIGURES}, label


def link_xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    """The extra links Airflow kept for the evaluate task (what the UI shows)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == "evaluate",
                XComModel.key.like("_link_%") | (XComModel.key == "airflow_batches_eval_files"),
            )
        ).all()
        return {row.key: _load(row.value) for row in rows}


def test_errored_requests_are_counted_apart_never_as_wrong(
    evals: DagRunner, tmp_path: Path
) -> None:
    # Batch ids are random, so which requests err is too: at 0.5, none of 30 erring is 1e-9.
    evals.emulator.configure(result_errors={"invalid_request_error": 0.5})
    result = run(evals, tmp_path)
    assert result.state == "success", result.states
    for label, m in result.xcom("evaluate")["models"].items():
        errored = m["counts"]["errored"]
        assert errored > 0, label
        assert m["scored"] == 30 - errored
        assert m["failed"] == m["scored"] - m["passed"]


def test_the_second_run_compares_with_the_first_through_the_asset(
    evals: DagRunner, tmp_path: Path
) -> None:
    first = run(evals, tmp_path)
    assert first.state == "success", first.states
    creates = evals.emulator.admin.create_calls()
    second = run(evals, tmp_path, min_score=0.5, max_regression=0.0)
    assert second.state == "success", second.states
    assert evals.emulator.admin.create_calls() == creates  # all answered from the cache
    summary = second.xcom("evaluate")
    assert summary["baseline"]["run_id"] == first.run_id
    for label in MODELS:
        assert summary["deltas"][label]["pass_rate"] == 0
        assert summary["models"][label]["cross_run_cache_hits"] == 30
        assert summary["models"][label]["cost_usd"] == 0
        assert summary["models"][label]["cost_avoided_usd"] > 0
        # The cache gave the same answers: last night's scores were taken, none judged again.
        assert summary["models"][label]["scores_reused"] == summary["models"][label]["scored"]
        assert summary["models"][label]["scored"] > 0
    assert summary["regressions"]["count"] == 0
    assert_costs_are_the_lines(summary, second.xcom("fetch"))
    assert summary["gate"] == {**summary["gate"], "checked": True, "violations": []}
    assert [h["run_id"] for h in summary["history"]] == [first.run_id]
    assert summary["scorer_fingerprint"] == first.xcom("evaluate")["scorer_fingerprint"]
    # reuse_scores=False: every answer is scored again, to the same figures.
    third = run(evals, tmp_path, reuse_scores=False)
    again = third.xcom("evaluate")
    for label in MODELS:
        assert again["models"][label]["scores_reused"] == 0
        for figure in ("scored", "passed", "mean_score"):
            assert again["models"][label][figure] == summary["models"][label][figure]


def test_a_regression_beyond_max_regression_fails_the_task_and_names_the_requests(
    evals: DagRunner, tmp_path: Path
) -> None:
    first = run(evals, tmp_path, cache="one")
    assert first.state == "success", first.states
    evals.emulator.configure(responder_options={"error_rates": dict.fromkeys(MODELS, 0.5)})
    second = run(evals, tmp_path, cache="two", max_regression=0.05)
    assert second.states["evaluate"] == "failed"
    manifest = second.xcom("fetch")
    folder = Path(manifest["destination"].removeprefix("file://"))
    summary = json.loads((folder / "summary.json").read_text())
    violated = summary["gate"]["violations"]
    assert any(v.startswith("claude-sonnet-4-5: mean_score fell by") for v in violated)
    regressed = read_lines(str(folder / "regressions.jsonl"))
    assert regressed and summary["regressions"]["count"] == len(regressed)
    assert {r["model"] for r in regressed} <= set(MODELS)
    assert all(r["passed_before"] and not r["passed_after"] for r in regressed)
    assert "thresholds not met" in (folder / "report.html").read_text().lower()


def test_min_score_can_skip_instead_of_fail(evals: DagRunner, tmp_path: Path) -> None:
    result = run(evals, tmp_path, min_score={"claude-haiku-4-5": 0.99}, on_threshold="skip")
    assert result.states["evaluate"] == "skipped"


def test_solve_reads_back_every_question_of_the_set() -> None:
    for request in eval_requests(60, seed=11):
        text = request["params"]["messages"][0]["content"]
        assert solve(text) == (request["metadata"]["category"], request["metadata"]["expected"])

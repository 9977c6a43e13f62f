"""The page over real runs: jobs in flight until fetched, an evaluation's nights (one that
failed its thresholds included), the report served from storage, and what each user sees."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.evalset import eval_requests
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.ui._board import Board
from airflow_batches.ui._listing import ListingCache, hook_lister
from airflow_batches.ui._urls import MOUNT
from tests.operators.conftest import DagRunner
from tests.operators.test_s3_storage import BUCKET
from tests.ui.conftest import Manager, Viewer

pytestmark = pytest.mark.slow

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
PROMPT = "What is the secret word of request {i}?"

SUBMIT_ONLY = """
SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS)
"""
FETCHED = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
    destination=RESULTS + "/{{ run_id | replace(':', '-') | replace('+', '-') }}")
submit >> wait >> fetch
"""
EVAL = """
from airflow_batches.evals import by_category, exact_match, json_schema, numeric
scorer = by_category({"arithmetic": numeric(), "lookup": exact_match(),
                      "extraction": json_schema(schema_key="schema")})
submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
    defaults={"max_tokens": 64})
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
    destination=RESULTS + "/{{ run_id | replace(':', '-') | replace('+', '-') }}")
evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output, scorer=scorer,
    asset=Asset(name=ASSET, uri=RESULTS + "/summary"), max_regression=0.05)
submit >> wait >> fetch >> evaluate
"""


EVAL_ON_S3 = """
from airflow_batches.evals import exact_match
submit = SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
    defaults={"max_tokens": 64})
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=OUT,
    destination_conn_id="aws_test")
evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output,
    scorer=exact_match(), destination_conn_id="aws_test", min_score=0.99)
submit >> wait >> fetch >> evaluate
"""


def plain_requests(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"q{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": PROMPT.format(i=i)}],
            },
        }
        for i in range(n)
    ]


@pytest.fixture
def runner(
    airflow_db: None,
    emulator_factory: Callable[..., RunningEmulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> DagRunner:
    emulator = emulator_factory(
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": {"claude-haiku-4-5": 0.1}, "seed": 7},
    )
    return DagRunner(emulator, tmp_path, monkeypatch)


def statements(call: Callable[[], Any]) -> int:
    """How many SQL statements ``call`` sends to the metadata database."""
    from airflow import settings
    from sqlalchemy import event

    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    event.listen(settings.engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(settings.engine, "before_cursor_execute", count)
    return len(sent)


def rows(html: str, table: str = "jobs") -> list[str]:
    found = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    return re.findall(r"<tr data-job=.*?</tr>", found.group(1), re.S) if found else []


def test_a_job_is_in_flight_until_its_run_fetched_it(
    runner: DagRunner, viewer_factory: Callable[..., Viewer]
) -> None:
    done = runner.run(FETCHED, REQS=plain_requests(4))
    runner.emulator.configure(paused=True)  # the batches stay in progress
    pending = runner.run(SUBMIT_ONLY, REQS=plain_requests(6), MODELS=MODELS)
    assert pending.state == done.state == "success", (pending.states, done.states)
    job = pending.xcom("submit")
    manager = Manager({"alice": {pending.dag_id, done.dag_id}})
    listings = ListingCache(hook_lister())
    viewer = viewer_factory(manager, board=Board(listings))

    answer = viewer.get("alice", "/api/jobs")
    assert answer.status_code == 200, answer.text
    (shown,) = answer.json()["jobs"]  # the fetched job is not in flight any more
    assert (shown["dag_id"], shown["run_id"], shown["task_id"]) == (
        pending.dag_id,
        pending.run_id,
        "submit",
    )
    assert shown["job_id"] == job["job_id"]
    assert [b["id"] for b in shown["batches"]] == [b["id"] for b in job["batches"]]
    # One batch per model, each named by its model; the listing's counts: all processing.
    assert [b["model"] for b in shown["batches"]] == MODELS
    assert shown["counts"]["processing"] == 12 == shown["request_count"]
    assert shown["estimate_usd"] == pytest.approx(job["estimate"]["expected_usd"])
    assert 0 < shown["expires_in_seconds"] <= 24 * 3600

    page = viewer.get("alice", "/")
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # no script at all
    (row,) = rows(page.text)
    for batch in job["batches"]:
        href = f"{runner.emulator.base_url}/_emulator/batches/{batch['id']}"
        assert f'href="{href}"' in row
    assert f'href="/dags/{pending.dag_id}/runs/' in row and "/tasks/submit" in row
    assert 'data-state="processing" data-count="12"' in row
    assert "run success" in row  # the run ended without fetching: said in the row's notes
    assert "secret word" not in page.text and runner.emulator.api_key not in page.text

    # Twenty views within the cache's lifetime: the connection is listed once.
    for _ in range(20):
        viewer.get("alice", "/")
    assert listings.reads == 1

    # The database is asked the same few queries whatever the number of jobs.
    before = statements(lambda: viewer.get("alice", "/api/jobs"))
    more = runner.run(SUBMIT_ONLY, REQS=plain_requests(3), MODELS=MODELS)
    manager.dags["alice"].add(more.dag_id)
    after = statements(lambda: viewer.get("alice", "/api/jobs"))
    assert len(viewer.get("alice", "/api/jobs").json()["jobs"]) == 2
    assert after == before <= 6

    run_page = viewer.get("alice", "/run", dag_id=done.dag_id, run_id=done.run_id)
    (fetched,) = rows(run_page.text)
    assert "fetched" in fetched and "billed" in fetched


def test_evaluations_night_by_night_with_the_failed_night_and_its_report(
    runner: DagRunner, viewer_factory: Callable[..., Viewer], tmp_path: Path
) -> None:
    values = {"REQS": eval_requests(12, seed=3), "MODELS": MODELS, "ASSET": "ui_eval_summary"}
    first = runner.run(EVAL, dag_id="nightly_ui", **values)
    assert first.state == "success", first.states
    # The second night, haiku answers far worse: regressions, and the threshold fails it.
    runner.emulator.configure(
        responder_options={"error_rates": {"claude-haiku-4-5": 0.8}, "seed": 7}
    )
    second = runner.run(EVAL, dag_id="nightly_ui", **values)
    assert second.states["evaluate"] == "failed", second.states
    assert second.xcom("evaluate") is None  # no return value: the page reads summary.json

    viewer = viewer_factory(Manager({"alice": {"nightly_ui"}, "eve": {"other_dag"}}))
    (evaluation,) = viewer.get("alice", "/api/evaluations").json()["evaluations"]
    assert (evaluation["dag_id"], evaluation["task_id"]) == ("nightly_ui", "evaluate")
    assert evaluation["models"] == MODELS
    night1, night2 = evaluation["nights"]
    assert (night1["run_id"], night2["run_id"]) == (first.run_id, second.run_id)
    summary1 = first.xcom("evaluate")
    folder2 = Path(second.xcom("fetch")["destination"].removeprefix("file://"))
    summary2 = json.loads((folder2 / "summary.json").read_text())
    for night, summary in ((night1, summary1), (night2, summary2)):
        for model in MODELS:
            figures = summary["models"][model]
            for key in ("pass_rate", "mean_score", "cost_usd", "cost_per_correct_usd"):
                assert night["models"][model][key] == pytest.approx(figures[key]), (model, key)
    assert night1["emitted_asset_event"] and not night2["emitted_asset_event"]
    assert night1["regressions"] is None and night2["regressions"] > 0
    assert night2["baseline_run_id"] == first.run_id
    assert night2["violations"] and night2["state"] == "failed"

    page = viewer.get("alice", "/").text
    article = re.search(r'<article class="evaluation".*?</article>', page, re.S).group(0)
    assert article.count("<svg") == 4  # pass rate, mean score, cost, cost per correct answer
    assert article.count('class="point"') == 4 * 2 * 2  # per chart: 2 models x 2 nights
    regressions = unescape(re.search(r'<a class="regressions" href="([^"]+)"', article).group(1))
    assert (
        regressions.endswith("#regressions")
        and f"run_id={second.run_id}".replace(":", "%3A").replace("+", "%2B") in regressions
    )

    # The test client serves the plugin's app alone (the api-server mounts it at MOUNT).
    report = viewer.get("alice", regressions.split("#")[0].removeprefix(MOUNT))
    assert report.status_code == 200
    assert report.text == (folder2 / "report.html").read_text()
    assert "sandbox" in report.headers["content-security-policy"]
    assert 'id="regressions"' in report.text
    # Someone who may not read the DAG gets no report, and no evaluation.
    path = regressions.split("#")[0].removeprefix(MOUNT)
    assert viewer.get("eve", path).status_code == 404
    assert viewer.get("eve", "/api/evaluations").json()["evaluations"] == []
    # A report whose file was removed since: not found, said so.
    (folder2 / "report.html").unlink()
    gone = viewer.get("alice", path)
    assert gone.status_code == 404 and "not there any more" in gone.text


def test_a_user_sees_only_the_dags_whose_records_they_may_read(
    runner: DagRunner, viewer_factory: Callable[..., Viewer]
) -> None:
    runner.emulator.configure(paused=True)
    mine = runner.run(SUBMIT_ONLY, REQS=plain_requests(2), MODELS=MODELS)
    theirs = runner.run(SUBMIT_ONLY, REQS=plain_requests(3), MODELS=MODELS)
    runner.emulator.configure(paused=False)
    both = {mine.dag_id, theirs.dag_id}
    manager = Manager(
        {"alice": both, "bob": {mine.dag_id}, "carol": both, "dave": set()},
        no_records={"carol": {theirs.dag_id}},  # may see the DAG, not its XComs
    )
    viewer = viewer_factory(manager)

    def dags(user: str) -> set[str]:
        return {j["dag_id"] for j in viewer.get(user, "/api/jobs").json()["jobs"]}

    assert dags("alice") == both
    assert dags("bob") == {mine.dag_id}
    assert dags("carol") == {mine.dag_id}
    assert dags("dave") == set()
    page = viewer.get("dave", "/").text
    assert 'id="no-jobs"' in page and theirs.dag_id not in page and mine.dag_id not in page
    run = viewer.get("bob", "/run", dag_id=theirs.dag_id, run_id=theirs.run_id).text
    assert 'id="no-jobs"' in run and "msgbatch_" not in run


def test_a_night_on_s3_is_charted_and_its_report_served_from_there(
    runner: DagRunner, viewer_factory: Callable[..., Viewer], s3: Any
) -> None:
    out = f"s3://{BUCKET}/evals/night-1"
    night = runner.run(EVAL_ON_S3, REQS=eval_requests(6, seed=5), MODELS=MODELS, OUT=out)
    assert night.states["evaluate"] == "failed", night.states  # min_score: no return value
    viewer = viewer_factory(Manager({"alice": {night.dag_id}}))
    (evaluation,) = viewer.get("alice", "/api/evaluations").json()["evaluations"]
    (shown,) = evaluation["nights"]
    stored = json.loads(
        s3.get_object(Bucket=BUCKET, Key="evals/night-1/summary.json")["Body"].read()
    )
    assert shown["problem"] is None and shown["violations"] == stored["gate"]["violations"]
    for model in MODELS:
        assert shown["models"][model]["pass_rate"] == stored["models"][model]["pass_rate"]
    report = viewer.get(
        "alice", "/report", dag_id=night.dag_id, run_id=night.run_id, task_id="evaluate"
    )
    assert report.status_code == 200
    assert (
        report.content
        == s3.get_object(Bucket=BUCKET, Key="evals/night-1/report.html")["Body"].read()
    )

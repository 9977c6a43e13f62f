"""The fetch under faults on its downloads: cut mid-body, 5xx, 529, 429 with retry-after.

Every read of results (the scan for failures to resend, the publish, the XCom path) goes
through one download path; each test cuts the reads of one of them and checks that the
complete results, each request once, are published all the same, on the first try.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.operators.conftest import DagRunner, make_requests

PIPELINE = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS, max_requests_per_batch=10)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, {fetch})
submit >> wait >> fetch
"""


def run(dag_runner: DagRunner, fetch: str, n: int, **faults: Any) -> Any:
    dag_runner.emulator.configure(faults={"results": faults})
    result = dag_runner.run(PIPELINE.replace("{fetch}", fetch), REQS=make_requests(n))
    assert result.state == "success", result.states
    assert result.tries["fetch"] == 1  # survived inside the task, not by an Airflow retry
    return result


def results_faults(dag_runner: DagRunner) -> Counter[str]:
    stats = dag_runner.emulator.admin.stats()["endpoints"].get("results", {})
    return Counter(stats.get("faults", {}))


def lines(dag_runner: DagRunner) -> list[dict[str, Any]]:
    text = (dag_runner.results / "results.jsonl").read_bytes().splitlines()
    return [json.loads(x) for x in text]


def test_cut_downloads_during_the_failure_scan(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.3}, seed=3)
    run(
        dag_runner,
        "destination=RESULTS, resubmit_failed=True, poke_interval=0.05",
        30,
        rate_cut=1.0,
        cut_fraction=0.5,
        max_count=3,  # the first reads: those of the scan for failures to resend
    )
    assert results_faults(dag_runner)["cut"] == 3
    got = lines(dag_runner)
    assert sorted(x["custom_id"] for x in got) == sorted(f"r{i}" for i in range(30))
    manifest = json.loads((dag_runner.results / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert len(manifest["attempts"]) >= 2  # the failures found by the cut scan were resent


def test_cut_downloads_while_publishing(dag_runner: DagRunner) -> None:
    run(dag_runner, "destination=RESULTS", 25, rate_cut=1.0, cut_fraction=0.3, max_count=4)
    assert results_faults(dag_runner)["cut"] == 4
    got = lines(dag_runner)
    assert Counter(x["custom_id"] for x in got) == Counter(f"r{i}" for i in range(25))


def test_cut_downloads_in_the_xcom_path(dag_runner: DagRunner) -> None:
    result = run(dag_runner, "", 12, rate_cut=1.0, cut_fraction=0.6, max_count=2)
    assert results_faults(dag_runner)["cut"] == 2
    fetched = result.xcom("fetch")
    assert sorted(r["custom_id"] for r in fetched["results"]) == sorted(f"r{i}" for i in range(12))
    assert fetched["manifest"]["complete"] is True


def test_overloaded_and_rate_limited_downloads(dag_runner: DagRunner) -> None:
    run(dag_runner, "destination=RESULTS", 20, rate_529=0.5, rate_429=0.3, retry_after=0.1)
    faults = results_faults(dag_runner)
    assert faults["529"] + faults["429"] > 0
    assert len(lines(dag_runner)) == 20

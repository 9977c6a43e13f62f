"""OpenLineage events of a real run: `airflow dags test` with the openlineage provider and
its file transport, as a user turns lineage on; and nothing changes without the provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.evalset import eval_requests
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from airflow_batches.operators._lineage import SCHEMA_FILE, SCHEMA_URL, job_facet_class
from airflow_batches.operators._lineage_facts import FACET_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = ["claude-haiku-4-5", {"model": "claude-sonnet-4-5", "label": "sonnet"}]
LABELS = ["claude-haiku-4-5", "sonnet"]

DAG = """
from airflow_batches.evals import by_category, exact_match, json_schema, numeric
scorer = by_category({"arithmetic": numeric(), "lookup": exact_match(),
                      "extraction": json_schema(schema_key="schema")})
submit = SubmitBatchOperator(task_id="submit", requests_path=REQUESTS, models=MODELS,
    defaults={"max_tokens": 64}, staging_path=STAGING)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
    split_by_model=True)
evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output, scorer=scorer)
gate = EvaluateResultsOperator(task_id="gate", results=fetch.output, scorer=scorer,
    destination=GATE, min_score=1.0)
bad_submit = SubmitBatchOperator(task_id="bad_submit", requests=BAD, staging_path=STAGING)
submit >> wait >> fetch >> [evaluate, gate]
"""


def _airflow(tmp_path: Path, emulator: RunningEmulator, **extra: str) -> dict[str, str]:
    """The environment of an `airflow` command on this session's metadata DB, with the DAG
    folder and the connection of this test."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(
                {
                    "conn_type": "message_batches",
                    "host": emulator.base_url,
                    "password": emulator.api_key,
                }
            ),
            **extra,
        }
    )
    return env


def _write_dag(tmp_path: Path, dag_id: str, body: str, **values: Any) -> None:
    folder = tmp_path / "dags"
    folder.mkdir(exist_ok=True)
    (folder / f"{dag_id}.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from airflow_batches import *\n"
        + "".join(f"{name} = {value!r}\n" for name, value in values.items())
        + f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )


@pytest.fixture(scope="module")
def lineage_run(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `airflow dags test` of submit >> wait >> fetch >> evaluate (and a gate that fails,
    and a submit that fails) with lineage written to a file, and what the run left."""
    tmp_path = tmp_path_factory.mktemp("lineage")
    config = EmulatorConfig().updated(
        {
            "responder": "airflow_batches.emulator.evalset:eval_responder",
            "responder_options": {"error_rates": {"claude-haiku-4-5": 0.3}, "seed": 7},
        }
    )
    requests = eval_requests(30, seed=3)
    requests_file = tmp_path / "in" / "requests.jsonl"
    requests_file.parent.mkdir()
    requests_file.write_text("".join(json.dumps(r) + "\n" for r in requests))
    bad = [{"custom_id": "x", "params": {"model": "claude-haiku-4-5", "max_tokens": 0}}]
    _write_dag(
        tmp_path,
        "lineage_eval",
        DAG,
        REQUESTS=str(requests_file),
        MODELS=MODELS,
        STAGING=f"file://{tmp_path / 'staging'}",
        RESULTS=f"file://{tmp_path / 'results'}",
        GATE=f"file://{tmp_path / 'gate'}",
        BAD=bad,
    )
    events_file = tmp_path / "events.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    airflow = str(Path(sys.executable).with_name("airflow"))
    with serve_emulator(config, data_dir=tmp_path / "emulator") as emulator:
        run = subprocess.run(
            [airflow, "dags", "test", "lineage_eval"],
            env=_airflow(tmp_path, emulator, AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport)),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
    assert events_file.exists(), run.stdout[-4000:] + run.stderr[-4000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line]
    manifest = json.loads((tmp_path / "results" / "manifest.json").read_text())
    # Before 3.3 the task's folder also holds its state/ (docs/compatibility.md).
    (job_dir,) = (tmp_path / "staging").glob(f"lineage_eval/*/submit/{manifest['job_id']}")
    return {
        "events": events,
        "raw": events_file.read_text(),
        "requests": requests,
        "requests_file": requests_file,
        "job_dir": job_dir,
        "manifest": manifest,
        "summary": json.loads((tmp_path / "results" / "summary.json").read_text()),
        "tmp_path": tmp_path,
        "api_key": emulator.api_key,
        "log": run.stdout[-4000:] + run.stderr[-4000:],
    }


def _event(run: dict[str, Any], task: str, kind: str) -> dict[str, Any]:
    found = [
        e
        for e in run["events"]
        if e["job"]["name"] == f"lineage_eval.{task}" and e["eventType"] == kind
    ]
    assert len(found) == 1, (
        task,
        kind,
        [(e["job"]["name"], e["eventType"]) for e in run["events"]],
    )
    return found[0]


def _names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def _facet(event: dict[str, Any]) -> dict[str, Any]:
    facet: dict[str, Any] = event["run"]["facets"][FACET_KEY]
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(facet, {**schema, "$ref": "#/$defs/AirflowBatchesJobRunFacet"})
    assert facet["_schemaURL"] == SCHEMA_URL
    return facet


def test_submit_names_the_requests_file_and_the_staged_job(lineage_run: dict[str, Any]) -> None:
    requests_in = [("file", str(lineage_run["requests_file"]))]
    start = _event(lineage_run, "submit", "START")
    assert _names(start["inputs"]) == requests_in
    assert [m["label"] for m in _facet(start)["models"]] == LABELS
    done = _event(lineage_run, "submit", "COMPLETE")
    assert _names(done["inputs"]) == requests_in
    assert _names(done["outputs"]) == [("file", str(lineage_run["job_dir"]))]
    facet = _facet(done)
    manifest = lineage_run["manifest"]
    assert facet["stage"] == "submit"
    assert facet["jobId"] == manifest["job_id"]
    assert facet["batchIds"] == manifest["batch_ids"] and len(facet["batchIds"]) == 2
    assert facet["apiVersion"] == manifest["anthropic_version"] == "2023-06-01"
    assert facet["requestCounts"] == {"total": 60, "sent": 60, "rejected": 0}
    assert {m["model"] for m in facet["models"]} == {"claude-haiku-4-5", "claude-sonnet-4-5"}
    assert facet["estimatedCostUsd"] > 0 and facet["worstCaseCostUsd"] >= facet["estimatedCostUsd"]


def test_fetch_names_the_results_file_of_each_model(lineage_run: dict[str, Any]) -> None:
    manifest = lineage_run["manifest"]
    files = list(manifest["files"].values())
    assert len(files) == 2 and all(".jsonl" in f for f in files)  # one per model
    start = _event(lineage_run, "fetch", "START")
    assert _names(start["inputs"]) == [("file", str(lineage_run["job_dir"]))]
    done = _event(lineage_run, "fetch", "COMPLETE")
    assert _names(done["inputs"]) == [("file", str(lineage_run["job_dir"]))]
    assert _names(done["outputs"]) == [("file", f.removeprefix("file://")) for f in files]
    facet = _facet(done)
    assert facet["stage"] == "fetch"
    assert facet["costUsd"] == manifest["cost_usd"] > 0
    assert facet["requestCounts"] == manifest["counts"]
    assert facet["usage"]["inputTokens"] == sum(
        u["input_tokens"] for u in manifest["usage_by_model"].values()
    )
    by_label = {m["label"]: m for m in facet["models"]}
    assert list(by_label) == LABELS
    assert by_label["sonnet"]["model"] == "claude-sonnet-4-5"
    assert by_label["sonnet"]["costUsd"] == manifest["matrix"]["sonnet"]["cost_usd"]
    assert by_label["sonnet"]["usage"]["outputTokens"] > 0


def test_evaluate_names_results_in_and_scores_summary_report_out(
    lineage_run: dict[str, Any],
) -> None:
    manifest, summary = lineage_run["manifest"], lineage_run["summary"]
    results_in = [("file", f.removeprefix("file://")) for f in manifest["files"].values()]
    assert _names(_event(lineage_run, "evaluate", "START")["inputs"]) == results_in
    done = _event(lineage_run, "evaluate", "COMPLETE")
    assert _names(done["inputs"]) == results_in
    folder = lineage_run["tmp_path"] / "results"
    assert _names(done["outputs"]) == [
        ("file", str(folder / name)) for name in ("scores.jsonl", "summary.json", "report.html")
    ]
    facet = _facet(done)
    # "What did last night's eval cost, and on which model": per label, from the summary.
    for model in facet["models"]:
        figures = summary["models"][model["label"]]
        assert model["passRate"] == figures["pass_rate"]
        assert model["costUsd"] == figures["cost_usd"]
    assert facet["costUsd"] == summary["totals"]["cost_usd"]
    assert facet["evaluation"]["thresholdsMet"] is True
    assert facet["batchIds"] == manifest["batch_ids"]


def test_failed_tasks_report_what_they_had(lineage_run: dict[str, Any]) -> None:
    gate = _event(lineage_run, "gate", "FAIL")
    gate_folder = lineage_run["tmp_path"] / "gate"
    # The files were written before the threshold failed the task.
    assert ("file", str(gate_folder / "summary.json")) in _names(gate["outputs"])
    facet = _facet(gate)
    assert facet["evaluation"]["thresholdsMet"] is False
    assert facet["models"][0]["passRate"] < 1.0
    assert "errorMessage" in gate["run"]["facets"]
    # Inline requests, refused before a job existed: no dataset of ours (what the provider
    # adds from hook lineage is its own; under `dags test` every task shares one process, so
    # it holds the other tasks' files), and a facet that names no job.
    bad = _event(lineage_run, "bad_submit", "FAIL")
    assert "errorMessage" in bad["run"]["facets"]
    facet = _facet(bad)
    assert facet["stage"] == "submit" and "jobId" not in facet and "batchIds" not in facet


def test_events_hold_no_key_no_request_text_no_answer(lineage_run: dict[str, Any]) -> None:
    raw = lineage_run["raw"]
    assert lineage_run["api_key"] not in raw
    for request in lineage_run["requests"]:
        assert request["params"]["messages"][0]["content"] not in raw
    results = lineage_run["tmp_path"] / "results"
    answers = [
        json.loads(line)["result"]["message"]["content"][-1]["text"]
        for path in results.glob("results.*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert answers
    for answer in answers:
        if len(answer) >= 8:  # long enough not to match a number or a word by chance
            assert answer not in raw


def test_facet_class_serialises_as_the_schema_says() -> None:
    from openlineage.client.serde import Serde

    facet = job_facet_class()(
        producer="urn:test", stage="fetch", jobId="abc", usage={"inputTokens": 3}
    )
    data = Serde.to_dict(facet)
    assert data["_schemaURL"] == SCHEMA_URL and data["_producer"] == "urn:test"
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(data, {**schema, "$ref": "#/$defs/AirflowBatchesJobRunFacet"})
    assert "costUsd" not in data  # unknown figures are left out, not null


ABSENT = """
# The openlineage provider made absent: its modules cannot be imported and its distributions
# (their entry points, which Airflow reads to find providers and plugins) are not seen.
import importlib.abc, sys
try:
    import importlib_metadata  # Airflow's reader of entry points adds its finder on import
except ImportError:
    pass

HIDDEN = ("openlineage", "airflow.providers.openlineage")

def hidden(name):
    name = name.lower().replace("_", "-")
    return name.startswith("openlineage") or name == "apache-airflow-providers-openlineage"

class Absent(importlib.abc.MetaPathFinder):
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN or name.startswith(tuple(h + "." for h in HIDDEN)):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def find_distributions(self, *args, **kwargs):
        find = getattr(self.inner, "find_distributions", None)
        for dist in find(*args, **kwargs) if find else ():
            if not hidden(dist.metadata["Name"] or ""):
                yield dist
    def invalidate_caches(self):
        getattr(self.inner, "invalidate_caches", lambda: None)()

sys.meta_path[:] = [Absent(finder) for finder in sys.meta_path]
assert not [n for n in sys.modules if n.startswith(HIDDEN)]

from datetime import datetime, timezone
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("no_lineage")
for task in dag.tasks:
    for method in ("on_start", "on_complete", "on_failure"):
        call = getattr(task, "get_openlineage_facets_" + method, None)
        if call is not None:
            assert (call() if method == "on_start" else call(None)) is None, (task, method)
run = dag.test(logical_date=datetime.now(timezone.utc))
assert str(run.state) == "success", run.state
print("ran without openlineage")
"""


def test_without_the_openlineage_provider_nothing_changes(
    airflow_db: None, emulator: RunningEmulator, tmp_path: Path
) -> None:
    _write_dag(
        tmp_path,
        "no_lineage",
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS, staging_path=STAGING)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS)
        evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output,
            scorer="contains")
        submit >> fetch >> evaluate
        """,
        REQS=[
            {
                "custom_id": f"q{i}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"question {i}"}],
                },
                "metadata": {"expected": "x"},
            }
            for i in range(3)
        ],
        STAGING=f"file://{tmp_path / 'staging'}",
        RESULTS=f"file://{tmp_path / 'results'}",
    )
    script = tmp_path / "absent.py"
    script.write_text(ABSENT)
    transport = {"type": "file", "log_file_path": str(tmp_path / "events.jsonl"), "append": True}
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "dags")],
        # Lineage asked for, but the provider is missing: the run goes on as before.
        env=_airflow(tmp_path, emulator, AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "ran without openlineage" in run.stdout
    assert (tmp_path / "results" / "summary.json").exists()
    assert not (tmp_path / "events.jsonl").exists()

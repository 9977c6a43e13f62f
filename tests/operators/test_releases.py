"""What differs between the Airflow releases we support (docs/compatibility.md), run on each.

Before 3.3 there is no task state store: what the operators keep there between tries (the
submission ledger, the fetch's attempts and its follow-up ledgers) goes to ``state/`` folders
on the staging storage instead, and a submit task with retries but nowhere shared to keep its
ledger is refused before anything is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_release import HAS_AWAITING_INPUT, HAS_TASK_STATE_STORE, HAS_TRIGGER_ON_KILL
from tests.operators.conftest import DagRunner, make_requests


def test_the_release_has_what_the_compatibility_table_says(dag_runner: DagRunner) -> None:
    from airflow_batches._compat import BaseTrigger, TaskAwaitingInput

    result = dag_runner.run(
        """
        @task
        def probe(**context):
            return context.get("task_state_store") is not None
        probe()
        """
    )
    assert result.state == "success", result.states
    assert result.xcom("probe") is HAS_TASK_STATE_STORE
    assert hasattr(BaseTrigger, "on_kill") is HAS_TRIGGER_ON_KILL
    assert (TaskAwaitingInput is not None) is HAS_AWAITING_INPUT


def _state_files(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.rglob(f"state/{prefix}.*.json"))


def test_what_must_outlive_a_try_is_kept_where_the_release_allows(
    dag_runner: DagRunner,
) -> None:
    # The follow-up is still running when the fetch first looks, so the fetch defers; and
    # `dag.test()` resumes it with the trigger's event alone (the deferral's kwargs are
    # dropped), so its attempts must come back from the state store. Were they lost, it would
    # start over at attempt 1 and resend the same failures in another batch.
    dag_runner.emulator.configure(result_errors={"overloaded_error": 0.5}, latency=0.2, workers=1)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS, retries=1)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
            resubmit_failed=True, max_attempts=2, deferrable=True, poke_interval=0.05)
        submit >> wait >> fetch
        """,
        REQS=make_requests(16),
    )
    assert result.state == "success", result.states
    assert result.events["fetch"] == ["running", "deferred", "running", "success"]
    manifest = result.xcom("fetch")
    batch_ids = [b["id"] for a in manifest["attempts"] for b in a["batches"]]
    assert len(batch_ids) == 2
    assert dag_runner.emulator.admin.batches_created() == 2  # nothing resent twice
    assert manifest["lines"] == 16

    ledgers = _state_files(dag_runner.staging, "airflow_batches.ledger")
    fetch_states = _state_files(dag_runner.staging, "airflow_batches.fetch")
    follow_ups = _state_files(dag_runner.staging, "airflow_batches.followup")
    if HAS_TASK_STATE_STORE:
        assert ledgers == fetch_states == follow_ups == []
        return
    job = result.xcom("submit")
    # The submit task's ledger: <staging>/<dag>/<run>/submit/state/
    [ledger] = ledgers
    assert ledger.parent.parent.name == "submit"
    assert [s["batch_id"] for s in json.loads(ledger.read_text())["shards"]] == batch_ids[:1]
    # The fetch task's: <job folder>/<dag>/<run>/fetch/state/
    [state] = fetch_states
    assert state.is_relative_to(Path(job["job_dir"].removeprefix("file://")))
    assert state.parent.parent.name == "fetch"
    saved = json.loads(state.read_text())
    assert [b["id"] for a in saved["attempts"] for b in a["batches"]] == batch_ids
    [follow_up] = follow_ups
    assert json.loads(follow_up.read_text())["attempt"] == 2


def _without_staging(dag_runner: DagRunner, monkeypatch: pytest.MonkeyPatch, retries: int) -> Any:
    monkeypatch.delenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH")
    return dag_runner.run(
        f"""
        SubmitBatchOperator(task_id="submit", requests=REQS, retries={retries},
            retry_delay=timedelta(seconds=0))
        """,
        REQS=make_requests(3),
    )


def test_submit_with_retries_and_nowhere_to_keep_its_ledger(
    dag_runner: DagRunner, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    result = _without_staging(dag_runner, monkeypatch, retries=2)
    out = capfd.readouterr().out
    if HAS_TASK_STATE_STORE:
        assert result.state == "success", result.states
        assert dag_runner.emulator.admin.batches_created() == 1
        return
    # Refused at once, before anything is sent, and not retried: the error names the fix.
    assert result.states["submit"] == "failed"
    assert result.tries["submit"] == 1
    assert dag_runner.emulator.admin.create_calls() == 0
    assert "Task 'submit' has retries=2, but Airflow 3." in out
    assert "has no task state store and no staging_path is set" in out
    assert "Set staging_path= (or [airflow_batches] staging_path)" in out


def test_submit_without_retries_and_nowhere_to_keep_its_ledger_warns(
    dag_runner: DagRunner, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    result = _without_staging(dag_runner, monkeypatch, retries=0)
    assert result.state == "success", result.states
    assert dag_runner.emulator.admin.batches_created() == 1
    warned = "cannot re-attach to the batches this try creates" in capfd.readouterr().out
    assert warned is not HAS_TASK_STATE_STORE

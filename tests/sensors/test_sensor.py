from __future__ import annotations

import pytest

from airflow_batches.jobs.wait import WaitCore, WaitSettings
from tests.operators.conftest import CONN_ID, DagRunner, held_until, make_requests


def test_deferred_wait_logs_progress_until_ended(
    dag_runner: DagRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    # The batches stay in progress until the trigger has polled them (the sensor's first
    # poke makes two retrieve calls, the trigger's first poll a list call, or retrieves when
    # the list is not worth it): the sensor must defer.
    emulator = dag_runner.emulator
    admin = emulator.admin
    with held_until(emulator, lambda: admin.calls("retrieve") + admin.calls("list") > 2):
        result = dag_runner.run(
            """
            submit = SubmitBatchOperator(task_id="submit", requests=REQS,
                max_requests_per_batch=10)
            wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05,
                max_poke_interval=0.1, deferrable=True)
            submit >> wait
            """,
            REQS=make_requests(20),
        )
    assert result.state == "success", result.states
    assert result.events["wait"] == ["running", "deferred", "running", "success"]
    out = capfd.readouterr().out
    assert "0/2 batch(es) ended" in out
    assert "2/2 batch(es) ended; 20/20 requests done (100.0%)" in out
    summary = result.xcom("wait")
    assert summary["counts"]["succeeded"] == 20
    assert summary["requests"] == 20


def test_sync_wait_in_worker(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(latency=0.02, workers=1)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05,
            deferrable=False)
        submit >> wait
        """,
        REQS=make_requests(10),
    )
    assert result.state == "success", result.states
    assert result.xcom("wait")["counts"]["succeeded"] == 10


def test_timeout_cancels_then_all_canceled_is_skipped(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(paused=True)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05,
            timeout=0.3, cancel_on_timeout=True, deferrable=True)
        again = BatchSensor(task_id="again", job=submit.output, poke_interval=0.05,
            deferrable=True, trigger_rule="all_done")
        submit >> wait >> again
        """,
        REQS=make_requests(4),
    )
    assert result.states["wait"] == "failed"
    assert result.states["again"] == "skipped"
    batch = dag_runner.emulator.admin.batches()[0]
    assert batch["status"] == "ended"
    assert batch["canceled"] == 4


def test_errored_results_warn_or_fail_by_policy(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(result_errors={"api_error": 1.0})
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        lenient = BatchSensor(task_id="lenient", job=submit.output, poke_interval=0.05)
        strict = BatchSensor(task_id="strict", job=submit.output, poke_interval=0.05,
            on_errored="fail")
        ratio = BatchSensor(task_id="ratio", job=submit.output, poke_interval=0.05,
            min_success_ratio=0.5)
        submit >> [lenient, strict, ratio]
        """,
        REQS=make_requests(3),
    )
    assert result.states["lenient"] == "success"
    assert result.states["strict"] == "failed"
    assert result.states["ratio"] == "failed"
    assert result.xcom("lenient")["counts"]["errored"] == 3


def test_plain_batch_ids_are_accepted(dag_runner: DagRunner) -> None:
    from airflow_batches.api import Client

    client = Client(api_key=dag_runner.emulator.api_key, base_url=dag_runner.emulator.base_url)
    batch = client.create(make_requests(2))
    result = dag_runner.run(
        """
        wait = BatchSensor(task_id="wait", job=BATCH_ID, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=[BATCH_ID])
        wait >> fetch
        """,
        BATCH_ID=batch.id,
    )
    assert result.state == "success", result.states
    fetched = result.xcom("fetch")
    assert sorted(r["custom_id"] for r in fetched["results"]) == ["r0", "r1"]
    assert fetched["manifest"]["batch_ids"] == [batch.id]


def test_on_kill_while_polling_in_the_worker_cancels_unless_told_not_to(
    dag_runner: DagRunner,
) -> None:
    from airflow_batches import BatchSensor
    from airflow_batches.api import Client

    emulator = dag_runner.emulator
    emulator.configure(paused=True)
    client = Client(api_key=emulator.api_key, base_url=emulator.base_url)
    doomed = client.create(make_requests(2)).id
    kept = client.create(make_requests(2)).id
    sensor = BatchSensor(task_id="wait", job=doomed, deferrable=False)
    sensor._watching = (CONN_ID, WaitCore.of([doomed], WaitSettings()))  # set while polling
    sensor.on_kill()
    assert client.retrieve(doomed).processing_status in ("canceling", "ended")
    polite = BatchSensor(task_id="wait2", job=kept, deferrable=False, cancel_on_kill=False)
    polite._watching = (CONN_ID, WaitCore.of([kept], WaitSettings()))
    polite.on_kill()
    assert client.retrieve(kept).processing_status == "in_progress"


def test_reschedule_mode_is_refused() -> None:
    from airflow_batches import BatchSensor

    with pytest.raises(ValueError, match="deferrable"):
        BatchSensor(task_id="w", job="msgbatch_x", mode="reschedule")


def test_soft_fail_turns_failures_into_skips_in_both_modes(dag_runner: DagRunner) -> None:
    dag_runner.emulator.configure(result_errors={"api_error": 1.0})
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests=REQS)
        sync = BatchSensor(task_id="sync", job=submit.output, poke_interval=0.05,
            on_errored="fail", soft_fail=True, deferrable=False)
        hard = BatchSensor(task_id="hard", job=submit.output, poke_interval=0.05,
            on_errored="fail", deferrable=False)
        submit >> [sync, hard]
        """,
        REQS=make_requests(2),
    )
    assert result.states["sync"] == "skipped"
    assert result.states["hard"] == "failed"

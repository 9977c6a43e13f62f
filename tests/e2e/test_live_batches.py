"""Our sensor on a live stack: it defers to a real triggerer, which loads BatchTrigger from
the installed package (the DAGs folder is not on PYTHONPATH), and a user killing the deferred
task cancels the batch through the trigger's on_kill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from tests.airflow_release import HAS_STATE_AUDIT_LOG, HAS_TRIGGER_ON_KILL
from tests.e2e.live import LiveAirflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "batch_dags"


@pytest.fixture(scope="module")
def live_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    data = tmp_path_factory.mktemp("emulator")
    with serve_emulator(EmulatorConfig(latency=0.15, workers=1), data_dir=data) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def stack(live_airflow_factory: Any, live_emulator: RunningEmulator, results: Path) -> LiveAirflow:
    conn = {
        "conn_type": "message_batches",
        "host": live_emulator.base_url,
        "password": live_emulator.api_key,
    }
    env = {
        "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(conn),
        "LIVE_RESULTS": f"file://{results}",
    }
    stack: LiveAirflow = live_airflow_factory(DAGS, env=env)
    return stack


def test_sensor_defers_to_a_real_triggerer_and_the_job_completes(
    stack: LiveAirflow, live_emulator: RunningEmulator, results: Path
) -> None:
    # Held until the sensor has deferred, whatever the machine's speed: the first poke must
    # find work left. And until the triggerer runs the trigger: a trigger firing at once can
    # meet Airflow's own race between the deferral's report and the resumed try.
    live_emulator.configure(paused=True)
    try:
        run_id = stack.trigger("live_batches")
        stack.wait_for_task_state("live_batches", run_id, "wait", "deferred", timeout=120)
        stack.wait_for_trigger_start("live_batches", run_id, "wait")
    finally:
        live_emulator.configure(paused=False)
    assert stack.wait_for_run("live_batches", run_id, timeout=180) == "success"
    # Airflow's own race (docs/compatibility.md, apache/airflow#66374 and its open variants on
    # 3.3): the scheduler can fail a try whose trigger fired before it handled the worker's
    # report of the deferral ("state mismatch"). The sensor's retry then finds the batch ended.
    # The try that deferred must still have run its trigger in the triggerer, to the end.
    # (3.1 keeps no audit row of the mismatch, and logs the states of the latest try only:
    # there a second try is the sign, and the first try's trigger log the proof.)
    tries = stack.task_instance("live_batches", run_id, "wait")["try_number"]
    if HAS_STATE_AUDIT_LOG:
        first = stack.task_events("live_batches", run_id, "wait", try_number=1)
        raced = "state mismatch" in first
        stack.assert_deferred_to_triggerer("live_batches", run_id, "wait", resumed=not raced)
    elif tries > 1:
        assert stack.trigger_ran("live_batches", run_id, "wait", 1)
    else:
        stack.assert_deferred_to_triggerer("live_batches", run_id, "wait")
    trigger_log = stack.trigger_log("live_batches", run_id, "wait")
    assert "Trigger fired event" in trigger_log and "'status': 'ended'" in trigger_log
    assert "batch(es) ended" in trigger_log
    assert "emulator-key" not in trigger_log
    lines = [p for p in results.rglob("results.jsonl")]
    assert len(lines) == 1
    assert len(lines[0].read_bytes().splitlines()) == 12
    assert live_emulator.admin.batches_created() == 1


def test_killing_the_deferred_sensor(stack: LiveAirflow, live_emulator: RunningEmulator) -> None:
    """From Airflow 3.3 the trigger's on_kill cancels the batch; before, the batch runs on."""
    live_emulator.configure(paused=True)
    try:
        run_id = stack.trigger("live_batches_kill")
        stack.wait_for_task_state("live_batches_kill", run_id, "wait", "deferred", timeout=120)
        stack.wait_for_trigger_start("live_batches_kill", run_id, "wait")
        batch_id = live_emulator.admin.batches()[-1]["id"]
        stack.set_task_state("live_batches_kill", run_id, "wait", "failed")
        stack.wait_for_trigger_end("live_batches_kill", run_id, "wait")
        canceled = live_emulator.admin.batch(batch_id)["cancel_initiated_at"] is not None
        assert canceled is HAS_TRIGGER_ON_KILL
        assert stack.on_kill_invoked("live_batches_kill", run_id, "wait") is HAS_TRIGGER_ON_KILL
    finally:
        live_emulator.configure(paused=False)
    if not HAS_TRIGGER_ON_KILL:
        assert live_emulator.wait_ended(batch_id, timeout=60)["succeeded"] == 3


def test_killing_the_sensor_waiting_in_a_worker_cancels_the_batch(
    stack: LiveAirflow, live_emulator: RunningEmulator
) -> None:
    """What users before Airflow 3.3 can do: deferrable=False, and the sensor's own on_kill
    cancels the batch when a user marks the task failed."""
    live_emulator.configure(paused=True)
    # The emulator serves the whole module: count this sensor's own polls, not earlier tests'.
    before = live_emulator.admin.calls("retrieve")
    try:
        run_id = stack.trigger("live_batches_kill_in_worker")
        stack.wait_for_task_state("live_batches_kill_in_worker", run_id, "wait", "running")
        live_emulator.wait_until(lambda: live_emulator.admin.calls("retrieve") > before, timeout=60)
        batch_id = live_emulator.admin.batches()[-1]["id"]
        stack.set_task_state("live_batches_kill_in_worker", run_id, "wait", "failed")
        live_emulator.wait_until(
            lambda: live_emulator.admin.batch(batch_id)["cancel_initiated_at"] is not None,
            timeout=60,
        )
        assert not stack.was_deferred("live_batches_kill_in_worker", run_id, "wait")
    finally:
        live_emulator.configure(paused=False)


def test_deferred_waits_on_one_triggerer_share_one_poller(
    stack: LiveAirflow, live_emulator: RunningEmulator
) -> None:
    waits = [f"wait_{n}" for n in range(4)]
    live_emulator.configure(paused=True)
    try:
        run_id = stack.trigger("live_batches_many")
        for task in waits:
            stack.wait_for_trigger_start("live_batches_many", run_id, task, timeout=120)
        lists = live_emulator.admin.calls("list")
        live_emulator.wait_until(lambda: live_emulator.admin.calls("list") > lists, timeout=30)
    finally:
        live_emulator.configure(paused=False)
    # What is checked is the triggerer's side. The run itself can lose a resumed task to an
    # Airflow race on a loaded machine (the executor's report of the deferring process read
    # after the task resumed: "state mismatch"); the first test covers a run to success.
    stack.wait_for_run("live_batches_many", run_id, timeout=180, expected_state=None)
    for task in waits:
        log = stack.trigger_log("live_batches_many", run_id, task)
        assert "Trigger fired event" in log and "'status': 'ended'" in log, task
    logs = stack.triggerer_log() + "".join(
        stack.trigger_log("live_batches_many", run_id, task) for task in waits
    )
    # The four triggers ran at once, and one poller served them (made once, dropped once).
    assert logs.count("Shared status poller for 'message_batches_default' started") == 1
    assert logs.count("Shared status poller for 'message_batches_default' closed") == 1

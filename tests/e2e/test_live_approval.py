"""The spend approval on a live stack: a person answers through the REST API as the UI does.

Five submits in one run: one under its ``approve_over_usd`` (never asks), one a person
approves, one a person rejects, one nobody answers, and one only ``alice`` may answer (its
``approvers``): ``bob``, an admin, is refused, and ``alice``, who may only use DAGs, approves.
The stack logs each of them in (the simple auth manager with named users). The task waits for
the answer without a worker slot: ``awaiting_input`` on Airflow 3.3 (the API's answer and the
scheduler's deadline sweep resume it), deferred to the standard provider's ``HITLTrigger`` on
a real triggerer on 3.1 and 3.2. Then the approved task is cleared: the new try finds the
approval and its ledger, asks no one and creates nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from tests.airflow_release import HAS_AWAITING_INPUT
from tests.approvals import answer, requests_of, wait_for
from tests.e2e.live import ApiError, LiveAirflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "approval_dags"
DAG_ID = "spend_approval"
WAITING = "awaiting_input" if HAS_AWAITING_INPUT else "deferred"


@pytest.fixture(scope="module")
def live_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    data = tmp_path_factory.mktemp("emulator")
    with serve_emulator(EmulatorConfig(latency=0.05), data_dir=data) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def stack(
    live_airflow_factory: Any,
    live_emulator: RunningEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> LiveAirflow:
    conn = {
        "conn_type": "message_batches",
        "host": live_emulator.base_url,
        "password": live_emulator.api_key,
    }
    env = {
        "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(conn),
        # Where a task keeps its ledger and its approval between tries before Airflow 3.3.
        "AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH": f"file://{tmp_path_factory.mktemp('staging')}",
        # The scheduler's sweep of answers past their deadline (3.3), every 2 s, not 15.
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
    }
    users = {"admin": "admin", "alice": "user", "bob": "admin"}
    stack: LiveAirflow = live_airflow_factory(DAGS, env=env, users=users)
    return stack


def batches_of(emulator: RunningEmulator, task: str) -> list[str]:
    """The batches holding the task's requests (their custom_ids start with its name)."""
    return [
        b["id"]
        for b in emulator.admin.batches()
        if emulator.admin.requests(b["id"])[0]["custom_id"].startswith(f"{task}-")
    ]


def parked(stack: LiveAirflow, task: str) -> bool:
    """Whether the scheduler has handled the executor's report that the try which asked has
    left its worker. An answer before that can meet Airflow's own race (docs/compatibility.md,
    *A wait that ends within seconds*): a person takes longer, a test must wait for it."""
    line = f"TaskInstance Finished: dag_id={DAG_ID}, task_id={task}, "
    return any(
        line in text and f"state={WAITING}," in text
        for text in stack.component_log("scheduler").splitlines()
    )


def test_approve_reject_and_no_answer_through_the_rest_api(
    stack: LiveAirflow, live_emulator: RunningEmulator
) -> None:
    run_id = stack.trigger(DAG_ID)
    asking = ("approved", "rejected", "assigned", "unanswered")
    for task in asking:
        stack.wait_for_task_state(DAG_ID, run_id, task, WAITING, timeout=180)
        if not HAS_AWAITING_INPUT:  # an answer is read by the trigger on the triggerer
            stack.wait_for_trigger_start(DAG_ID, run_id, task)
        wait_for(
            lambda t=task: parked(stack, t), timeout=60, what=f"the scheduler to see {task} wait"
        )
    assert stack.wait_for_task_state(DAG_ID, run_id, "cheap", "success", timeout=120)
    assert live_emulator.admin.create_calls() == 1  # the cheap one's: nothing else sent yet

    # What the UI's Required actions lists: one request per task over its amount.
    listed = {d["task_instance"]["task_id"]: d for d in requests_of(stack.api, DAG_ID)}
    assert sorted(listed) == sorted(asking)
    approved = listed["approved"]
    assert approved["options"] == ["Approve", "Reject"] and not approved["response_received"]
    assert "6 request(s) in 2 batch(es); nothing has been sent yet" in approved["body"]
    assert "| claude-opus-5-5 | 6 |" in approved["body"]
    assert "worst case $" in approved["body"]
    assigned = listed["assigned"]
    assert [u["id"] for u in assigned["assigned_users"]] == ["alice"]
    assert "Only alice may answer." in assigned["body"]
    assert not approved["assigned_users"]  # anyone may answer it
    with pytest.raises(ApiError) as refused:  # not among its approvers, admin or not
        answer(functools.partial(stack.api, as_user="bob"), assigned, "Approve")
    assert refused.value.status == 403
    answer(functools.partial(stack.api, as_user="alice"), assigned, "Approve")

    answer(stack.api, listed["rejected"], "Reject")
    answer(stack.api, approved, "Approve")
    with pytest.raises(ApiError) as twice:  # an answer is final
        answer(stack.api, approved, "Reject")
    assert twice.value.status == 409

    assert stack.wait_for_run(DAG_ID, run_id, timeout=240, expected_state="failed") == "failed"
    states = stack.task_states(DAG_ID, run_id)
    assert states == {
        "cheap": "success",
        "approved": "success",
        "rejected": "failed",
        "assigned": "success",
        "unanswered": "failed",
    }, stack.diagnostics(DAG_ID, run_id)
    assert len(batches_of(live_emulator, "approved")) == 2  # one per shard
    assert len(batches_of(live_emulator, "assigned")) == 1
    assert batches_of(live_emulator, "rejected") == batches_of(live_emulator, "unanswered") == []
    assert live_emulator.admin.create_calls() == 4
    assert "Spend approved by alice" in stack.task_log(DAG_ID, run_id, "assigned")

    rejected_log = stack.task_log(DAG_ID, run_id, "rejected")
    assert "rejected the spend approval at " in rejected_log
    assert "nothing was sent" in rejected_log
    assert "No one answered the spend approval within approval_timeout (15s)" in stack.task_log(
        DAG_ID, run_id, "unanswered"
    )
    with pytest.raises(ApiError) as none:  # under its amount: never asked
        stack.api(
            "GET",
            f"dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/cheap/-1/hitlDetails",
        )
    assert none.value.status == 404
    for task in ("rejected", "unanswered"):  # final: not retried
        assert stack.task_instance(DAG_ID, run_id, task)["try_number"] == 1

    # A clear of the approved task: its new try re-attaches, asks no one, creates nothing.
    stack.clear_task(DAG_ID, run_id, "approved")
    wait_for(
        lambda: (
            stack.task_instance(DAG_ID, run_id, "approved")["try_number"] == 2
            and stack.task_instance(DAG_ID, run_id, "approved")["state"] == "success"
        ),
        timeout=180,
        what="the cleared task to run again",
    )
    assert live_emulator.admin.create_calls() == 4
    asked_again = [
        d
        for d in requests_of(stack.api, DAG_ID)
        if d["task_instance"]["task_id"] == "approved" and not d["response_received"]
    ]
    assert asked_again == []
    second_log = stack.task_log(DAG_ID, run_id, "approved", 2)
    assert "Spend approved earlier by " in second_log
    assert "re-attaching" in second_log
    for batch_id in batches_of(live_emulator, "approved"):
        assert f"re-attached to batch {batch_id}" in second_log

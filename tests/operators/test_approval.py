"""Spend approval (``approve_over_usd``) in real DAGs: a person answers through the REST API.

``dag.test()`` runs the submit; a thread plays the person at the UI and answers through the
HITL endpoints of the public API app (``tests/approvals.py``), on the same metadata DB. On
Airflow 3.3 the task waits in ``awaiting_input`` and the API's answer resumes it; on 3.1 and
3.2 it defers and ``dag.test()`` runs the ``HITLTrigger`` inline, which reads the answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs.cost import Estimate
from airflow_batches.jobs.cost._spend import ModelEstimate
from tests.airflow_release import HAS_AWAITING_INPUT, HAS_STATE_AUDIT_LOG
from tests.approvals import (
    Answerer,
    InProcessApi,
    detail_path,
    let_dag_test_read_answers,
    option_rows,
    requests_of,
)
from tests.operators.conftest import DagRunner, make_requests

# The REST API's tokens are signed with Airflow's default per-process key, shorter than PyJWT
# would like; a deployment sets [api_auth] jwt_secret.
pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is .* bytes long")

MODELS = ["claude-opus-5-5", "claude-haiku-4-5"]
WAITING = "awaiting_input" if HAS_AWAITING_INPUT else "deferred"
"""How a task waits for the answer: parked without a trigger (3.3), or deferred (3.1, 3.2)."""


@pytest.fixture(scope="module")
def api(airflow_db: None) -> InProcessApi:
    let_dag_test_read_answers()
    return InProcessApi()


def dollars(text: str, label: str) -> float:
    found = re.search(rf"{label} \$([\d,]+\.\d+)", text)
    assert found, f"no {label!r} figure in {text!r}"
    return float(found[1].replace(",", ""))


def test_under_the_amount_nothing_is_asked(
    dag_runner: DagRunner, api: InProcessApi, capfd: pytest.CaptureFixture[str]
) -> None:
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS, approve_over_usd=100)',
        dag_id="approval_under",
        REQS=make_requests(4),
    )
    assert result.state == "success", result.states
    assert requests_of(api, "approval_under") == []
    assert "deferred" not in result.events["submit"]
    assert "awaiting_input" not in result.events["submit"]
    assert "is within approve_over_usd $100.0000: no approval needed" in capfd.readouterr().out
    assert dag_runner.emulator.admin.create_calls() == 1


def test_a_reject_sends_nothing_and_fails_without_retry(
    dag_runner: DagRunner, api: InProcessApi, capfd: pytest.CaptureFixture[str]
) -> None:
    with Answerer(api, "approval_reject", {"submit": "Reject"}) as person:
        result = dag_runner.run(
            """
            SubmitBatchOperator(task_id="submit", requests=REQS, models=MODELS,
                approve_over_usd=0.001, retries=2, retry_delay=timedelta(0))
            """,
            dag_id="approval_reject",
            REQS=make_requests(5, max_tokens=2000),
            MODELS=MODELS,
        )
    assert result.states["submit"] == "failed"
    assert result.tries["submit"] == 1  # a rejection is final: never retried
    assert WAITING in result.events["submit"]
    assert dag_runner.emulator.admin.create_calls() == 0
    assert dag_runner.emulator.admin.stats()["endpoints"]["create"]["calls"] == 0
    assert person.answered == [("submit", "Reject")]

    [detail] = person.asked("submit")
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["defaults"] is None  # no answer is never taken for a yes
    body = detail["body"]
    expected, worst = dollars(body, "Expected cost"), dollars(body, "worst case")
    assert 0.001 < expected < worst
    assert f"${expected:,.2f}" in detail["subject"]
    assert "10 request(s) in 2 batch(es); nothing has been sent yet" in body
    rows = option_rows(body)
    assert [row.split(" | ")[0:2] for row in rows[1:]] == [
        ["| claude-haiku-4-5", "5"],
        ["| claude-opus-5-5", "5"],
    ]
    per_model = [
        [float(c.strip(" |$").replace(",", "")) for c in r.split(" | ")[2:]] for r in rows[1:]
    ]
    assert sum(m[0] for m in per_model) == pytest.approx(expected, abs=1e-3)
    assert sum(m[1] for m in per_model) == pytest.approx(worst, abs=1e-3)

    out = capfd.readouterr().out
    assert "rejected the spend approval at " in out
    assert "nothing was sent. Clear the task to ask again." in out


def test_an_approval_creates_each_shard_once_and_a_retry_does_not_ask_again(
    dag_runner: DagRunner, api: InProcessApi, capfd: pytest.CaptureFixture[str]
) -> None:
    # Try 1, once approved: the first create makes its batch but the answer is lost, and the
    # search for it fails too, so the task fails. Try 2 must neither ask again nor create
    # that batch again: it finds the approval and the ledger, adopts the batch and creates
    # the second shard's.
    dag_runner.emulator.configure(
        faults={
            "create": {"rate_drop_after": 1.0, "max_count": 1},
            "list": {"rate_500": 1.0, "max_count": 3},
        }
    )
    with Answerer(api, "approval_retry", {"submit": "Approve"}) as person:
        result = dag_runner.run(
            """
            SubmitBatchOperator(task_id="submit", requests=REQS, approve_over_usd=0.001,
                max_requests_per_batch=3, retries=1, retry_delay=timedelta(0),
                approval_timeout=120)
            """,
            dag_id="approval_retry",
            REQS=make_requests(6, model="claude-opus-5-5", max_tokens=2000),
        )
    assert result.state == "success", result.states
    assert result.tries["submit"] == 2
    # The task's own states: on 3.1 and 3.2 a quick answer's audit row ("update_hitl_detail")
    # can come before the row of the wait it answers (the trigger reads it either way).
    events = [e for e in result.events["submit"] if e != "update_hitl_detail"]
    if HAS_STATE_AUDIT_LOG:
        assert events[:2] == ["running", WAITING]
        assert WAITING not in events[2:]  # the retry did not wait again
    else:  # Airflow 3.1 shows the states of the latest try only: the retry's
        assert WAITING not in events
    assert person.answered == [("submit", "Approve")]
    assert len(person.asked("submit")) == 1
    emulator = dag_runner.emulator
    assert emulator.admin.batches_created() == 2
    assert emulator.admin.create_calls() == 2  # one per shard, across both tries
    job = result.xcom("submit")
    assert sorted(b["id"] for b in job["batches"]) == sorted(
        b["id"] for b in emulator.admin.batches()
    )
    # What the person was shown is the estimate the job carries.
    [detail] = person.asked("submit")
    assert dollars(detail["body"], "Expected cost") == pytest.approx(
        job["estimate"]["expected_usd"], abs=1e-4
    )
    assert dollars(detail["body"], "worst case") == pytest.approx(
        job["estimate"]["worst_usd"], abs=1e-4
    )
    assert "6 request(s) in 2 batch(es)" in detail["body"]
    out = capfd.readouterr().out
    assert "Spend approved by " in out
    assert "Spend approved earlier by " in out  # the retry
    assert "re-attach" in out


def test_a_job_changed_between_the_question_and_the_answer_is_not_sent(
    dag_runner: DagRunner, api: InProcessApi, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "requests.jsonl"
    lines = [json.dumps(r) for r in make_requests(3, model="claude-opus-5-5", max_tokens=2000)]
    source.write_text("\n".join(lines) + "\n")

    def more_requests(_: dict[str, Any]) -> None:
        extra = make_requests(1, prefix="late", model="claude-opus-5-5", max_tokens=2000)
        source.write_text("\n".join([*lines, json.dumps(extra[0])]) + "\n")

    with Answerer(
        api, "approval_changed", {"submit": "Approve"}, before_answer=more_requests
    ) as person:
        result = dag_runner.run(
            """
            SubmitBatchOperator(task_id="submit", requests_path=SOURCE, approve_over_usd=0.001)
            """,
            dag_id="approval_changed",
            SOURCE=str(source),
        )
    assert result.states["submit"] == "failed"
    assert person.answered == [("submit", "Approve")]
    assert dag_runner.emulator.admin.create_calls() == 0
    out = capfd.readouterr().out
    assert "The job changed between the approval request and " in out
    assert "nothing was sent" in out


def _estimate(expected: float | None) -> Estimate:
    model = ModelEstimate(
        model="m",
        requests=2,
        tokens={},
        worst_output_tokens=0,
        expected_usd=expected,
        worst_usd=None if expected is None else expected * 2,
        standard_usd=None,
        requests_by_tier={},
        tokenizer="",
    )
    return Estimate(requests=2, models={"m": model}, assumptions=[])


def test_the_gate_asks_for_unpriced_models_and_keeps_an_approval_to_its_job() -> None:
    import logging

    from airflow_batches.operators._approval import RECORD_KEY, ApprovalNeeded, Approved, SpendGate
    from airflow_batches.operators._approval_request import Answer, ApprovalRecord

    class Store(dict[str, Any]):
        def set(self, key: str, value: Any) -> None:
            self[key] = value

    log = logging.getLogger("test")
    store = Store()
    SpendGate(1.0, store, None, log).check(_estimate(0.5), "f" * 64, 1)  # under: goes on
    with pytest.raises(ApprovalNeeded):  # an unknown price is a person's call
        SpendGate(1.0, store, None, log).check(_estimate(None), "f" * 64, 1)
    with pytest.raises(ApprovalNeeded) as asked:
        SpendGate(1.0, store, None, log).check(_estimate(2.0), "a" * 64, 1)
    assert asked.value.asked.expected_usd == 2.0

    answer = Answer(chosen_options=["Approve"], responded_by_user={"id": "7", "name": "ana"})
    approved = Approved(answer, asked.value.asked)
    SpendGate(1.0, store, approved, log).check(_estimate(2.0), "a" * 64, 1)
    record = ApprovalRecord.model_validate(store[RECORD_KEY])
    assert (record.approved_by, record.fingerprint) == ("ana (id 7)", "a" * 64)
    # A retry: the same job goes on without asking; a dearer or another one is asked about.
    SpendGate(1.0, store, None, log).check(_estimate(2.0), "a" * 64, 1)
    with pytest.raises(ApprovalNeeded):
        SpendGate(1.0, store, None, log).check(_estimate(2.5), "a" * 64, 1)
    with pytest.raises(ApprovalNeeded):
        SpendGate(1.0, store, None, log).check(_estimate(2.0), "b" * 64, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"approve_over_usd": -1}, "approve_over_usd must be a number of dollars >= 0, got -1"),
        ({"approve_over_usd": float("nan")}, "approve_over_usd must be a number"),
        ({"approval_timeout": -5}, "approval_timeout must be a number of seconds >= 0"),
        ({"approvers": "alice"}, "approvers must be a list of user ids"),
        ({"approvers": []}, "approvers must name 1 to 100 users (None: anyone may answer), got 0"),
        ({"approvers": ["alice", " "]}, "approvers[1] must be a non-empty user id"),
        ({"approvers": [{"name": "bob"}]}, "approvers[0] must be a non-empty user id"),
        ({"approvers": [{"id": "7", "role": "x"}]}, "approvers[0] must be a non-empty user id"),
        ({"approvers": ["alice", {"id": "alice"}]}, "approvers[1]: 'alice' is named twice"),
        ({"approvers": [f"u{i}" for i in range(101)]}, "approvers must name 1 to 100 users"),
    ],
)
def test_bad_settings_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    from airflow_batches import SubmitBatchOperator

    with pytest.raises(ValueError, match=re.escape(message)):
        SubmitBatchOperator(task_id="submit", requests=[], **kwargs)


def test_only_the_approvers_may_answer_and_the_request_names_them(
    dag_runner: DagRunner, api: InProcessApi, capfd: pytest.CaptureFixture[str]
) -> None:
    # Anyone else (an admin, mallory) is refused by Airflow's API; alice approves.
    refused: list[tuple[int, str]] = []
    mallory = api.as_user("mallory")

    def someone_else_first(detail: dict[str, Any]) -> None:
        body = {"chosen_options": ["Approve"]}
        refused.append(mallory.status_of("PATCH", detail_path(detail), body))

    alice = api.as_user("alice")
    with Answerer(
        alice, "approval_approvers", {"submit": "Approve"}, before_answer=someone_else_first
    ) as person:
        result = dag_runner.run(
            """
            SubmitBatchOperator(task_id="submit", requests=REQS, approve_over_usd=0.001,
                approvers=["alice", {"id": "7", "name": "Bob"}], approval_timeout=120)
            """,
            dag_id="approval_approvers",
            REQS=make_requests(3, model="claude-opus-5-5", max_tokens=2000),
        )
    assert result.state == "success", result.states
    [(status, text)] = refused
    assert status == 403 and "is not a respondent" in text, (status, text)
    [detail] = person.asked("submit")
    assert detail["assigned_users"] == [
        {"id": "alice", "name": "alice"},
        {"id": "7", "name": "Bob"},
    ]
    assert "Only alice, Bob (7) may answer." in detail["body"]
    assert detail["responded_by_user"] is None or detail["responded_by_user"]["id"] == "alice"
    assert "Spend approved by alice at " in capfd.readouterr().out
    assert dag_runner.emulator.admin.create_calls() == 1


def test_an_approval_from_someone_not_named_sends_nothing() -> None:
    """Should an answer reach the task from a user Airflow did not check (a custom auth
    manager that lets anyone answer), the task itself refuses it before any create."""
    from airflow_batches import SubmitBatchOperator
    from airflow_batches._compat import AirflowFailException

    op = SubmitBatchOperator(
        task_id="submit", requests=[], approve_over_usd=1, approvers=["alice", {"id": "7"}]
    )
    sent: list[Any] = []
    op.submit_approved = lambda context, approved: sent.append(approved)  # type: ignore[method-assign]
    asked = {"fingerprint": "a" * 64, "expected_usd": 2.0, "worst_usd": 4.0, "requests": 2,
             "approve_over_usd": 1.0}  # fmt: skip
    for user in ({"id": "mallory", "name": "alice"}, None):
        event = {"chosen_options": ["Approve"], "responded_by_user": user}
        with pytest.raises(AirflowFailException, match="who is not among the approvers"):
            op.execute_approved({}, event, asked)  # type: ignore[arg-type]
    assert sent == []
    op.execute_approved(
        {}, {"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "x"}}, asked
    )  # type: ignore[arg-type]
    assert len(sent) == 1

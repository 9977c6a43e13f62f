"""Spend approval: a submit whose estimate is over ``approve_over_usd`` waits for a person.

Plan, approve, apply, in the one submit task (docs/operators.md, *Spend approval*):

1. **Plan.** The submit stages and estimates as always; :meth:`SpendGate.check` runs after
   the spend guard and before the ledger or any create. Over the amount (or with an unpriced
   model) it raises :class:`ApprovalNeeded`: nothing sent.
2. **Ask.** :meth:`ApprovalMixin.asking_for_approval` writes the request through Airflow's
   human-in-the-loop support (the ``hitl_detail`` row ``HITLOperator`` writes: the UI's
   *Required actions*, the REST API's ``hitlDetails``) and waits without a worker slot:
   ``awaiting_input`` on Airflow 3.3, deferred to ``HITLTrigger`` on 3.1 and 3.2.
3. **Apply.** :meth:`ApprovalMixin.execute_approved` reads the answer: *Reject*, no answer or
   a failed request fail the task without retry. *Approve* runs the submission again; the gate
   lets the job asked about through (same fingerprint, no dearer), records the approval in the
   ledger's state store, and the one submission path (``jobs.submit``) creates the batches. A
   retry or clear finds the approval there and re-attaches without asking again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import quote

from pydantic import ValidationError

from airflow_batches._compat import (
    AirflowFailException,
    BaseOperator,
    HITLTrigger,
    TaskAwaitingInput,
    conf,
    upsert_hitl_detail,
)
from airflow_batches.jobs import job_key
from airflow_batches.jobs.cost import Estimate
from airflow_batches.operators._approval_request import (
    APPROVE,
    REJECT,
    Answer,
    ApprovalRecord,
    approval_body,
    approver_list,
)
from airflow_batches.operators._common import TaskStateStore
from airflow_batches.operators._wait_mixin import seconds

if TYPE_CHECKING:
    from airflow_batches._compat import Context

RECORD_KEY: Final = "airflow_batches.approval"
"""The task state store key of the approval asked for or given (one per task instance)."""
RESUME_METHOD: Final = "execute_approved"
POLL_SECONDS: Final = 5.0
"""How often the HITL trigger reads the answer (Airflow 3.1 and 3.2 only)."""


@dataclass(frozen=True)
class Approved:
    """A try resumed with *Approve*: the answer, and what was asked (None when neither the
    resume nor a state store kept it)."""

    answer: Answer
    asked: ApprovalRecord | None


class ApprovalNeeded(Exception):
    """The job is over ``approve_over_usd`` and not approved yet; nothing was sent."""

    def __init__(
        self, asked: ApprovalRecord, estimate: Estimate, batches: int, store: TaskStateStore | None
    ) -> None:
        super().__init__(f"approval needed for job {job_key(asked.fingerprint)}")
        self.asked = asked
        self.estimate = estimate
        self.batches = batches
        self.store = store


class SpendGate:
    """The check between the estimate and the first create of one submission.

    :param approved: this try's approval, if it resumed with one.
    """

    def __init__(
        self,
        approve_over_usd: float | None,
        store: TaskStateStore | None,
        approved: Approved | None,
        log: Any,
    ) -> None:
        self.approve_over_usd = approve_over_usd
        self.store = store
        self.approved = approved
        self.log = log

    def check(self, estimate: Estimate, fingerprint: str, batches: int) -> None:
        """Return when the job may be sent; raise :class:`ApprovalNeeded` when a person must
        approve it first, or fail the task when it is not the job that was approved."""
        limit = self.approve_over_usd
        if limit is None:
            return
        if estimate.expected_usd <= limit and not estimate.unpriced_models:
            self.log.info(
                "Expected cost $%.4f is within approve_over_usd $%.4f: no approval needed",
                estimate.expected_usd,
                limit,
            )
            return
        if self.approved is not None:
            answer = self.approved.answer
            asked = self.approved.asked or self._stored()
            if asked is not None and not asked.covers(fingerprint, estimate):
                raise AirflowFailException(
                    f"The job changed between the approval request and {answer.who}'s approval "
                    f"(fingerprint {job_key(asked.fingerprint)} -> {job_key(fingerprint)}, "
                    f"expected ${asked.expected_usd:,.4f} -> ${estimate.expected_usd:,.4f}): "
                    "nothing was sent. Clear the task to ask again."
                )
            record = _record(fingerprint, estimate, limit)
            record.approved_by, record.approved_at = answer.who, answer.responded_at
            if self.store is not None:
                self.store.set(RECORD_KEY, record.model_dump(mode="json"))
            self.log.info("Spend approved by %s at %s: creating the batches", *_by(record))
            return
        stored = self._stored()
        if stored is not None and stored.approved_by and stored.covers(fingerprint, estimate):
            self.log.info(
                "Spend approved earlier by %s at %s (a retry or clear): going on", *_by(stored)
            )
            return
        raise ApprovalNeeded(_record(fingerprint, estimate, limit), estimate, batches, self.store)

    def _stored(self) -> ApprovalRecord | None:
        data = self.store.get(RECORD_KEY) if self.store is not None else None
        try:
            return ApprovalRecord.model_validate(data) if data else None
        except ValidationError:
            return None


class ApprovalMixin(BaseOperator):
    """The spend approval of ``SubmitBatchOperator`` (this module's docstring).

    :param approve_over_usd: ask a person to approve the job when its expected cost (batch
        prices, as ``max_cost_usd`` reads it) is over this amount, or when a model has no
        price; the request shows the cost per model, the worst case and the request count.
        None (default): never ask.
    :param approval_timeout: how long to wait for the answer (seconds or a timedelta; None:
        as long as it takes); no answer by then fails the task, nothing sent.
    :param approvers: who may answer: user ids as the auth manager names them (the username
        with the simple auth manager, the user's id with FAB), or ``{"id", "name"}`` dicts.
        Airflow's API refuses anyone else's answer (403), and an *Approve* from a user not in
        the list fails the task, nothing sent. None (default): anyone the auth manager lets
        answer the DAG's required actions.
    """

    def __init__(
        self,
        *,
        approve_over_usd: float | None = None,
        approval_timeout: float | timedelta | None = timedelta(hours=24),
        approvers: Sequence[str | Mapping[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if approve_over_usd is not None and not (
            isinstance(approve_over_usd, int | float)
            and not isinstance(approve_over_usd, bool)
            and math.isfinite(approve_over_usd)
            and approve_over_usd >= 0
        ):
            raise ValueError(
                f"approve_over_usd must be a number of dollars >= 0, got {approve_over_usd!r}"
            )
        self.approve_over_usd = approve_over_usd
        self.approval_timeout = (
            None if approval_timeout is None else seconds("approval_timeout", approval_timeout)
        )
        self.approvers = approver_list(approvers)

    def submit_approved(self, context: Context, approved: Approved | None) -> Any:
        """Run the submission; ``approved``: this try's approval, if it resumed with one."""
        raise NotImplementedError

    def spend_gate(self, store: TaskStateStore | None, approved: Approved | None) -> SpendGate:
        return SpendGate(self.approve_over_usd, store, approved, self.log)

    @contextmanager
    def asking_for_approval(self, context: Context) -> Iterator[None]:
        """Turn :class:`ApprovalNeeded` into a HITL request and the wait for its answer."""
        try:
            yield
        except ApprovalNeeded as needed:
            self._ask(context, needed)

    def _ask(self, context: Context, needed: ApprovalNeeded) -> NoReturn:
        ti = context["task_instance"]
        timeout = (
            None if self.approval_timeout is None else timedelta(seconds=self.approval_timeout)
        )
        deadline = None if timeout is None else datetime.now(UTC) + timeout
        asked = needed.asked
        upsert_hitl_detail(
            ti_id=ti.id,
            options=[APPROVE, REJECT],
            subject=(
                f"Approve Message Batches spend of ${asked.expected_usd:,.2f} (expected) "
                f"for {ti.dag_id}.{ti.task_id}?"
            ),
            body=approval_body(needed.estimate, asked, needed.batches, deadline, self.approvers),
            defaults=None,
            multiple=False,
            params={},
            assigned_users=self.approvers or None,  # type: ignore[arg-type]
        )
        if needed.store is not None:
            needed.store.set(RECORD_KEY, asked.model_dump(mode="json"))
        self.log.warning(
            "Expected cost $%.4f is over approve_over_usd $%.4f: waiting for a person to "
            "approve (nothing sent). Answer in the UI's Required actions%s, or through "
            "PATCH /api/v2/dags/%s/dagRuns/%s/taskInstances/%s/%d/hitlDetails with "
            '{"chosen_options": ["%s"]} or ["%s"]; no answer by %s fails the task.',
            asked.expected_usd,
            asked.approve_over_usd,
            _ui_link(ti),
            quote(ti.dag_id, safe=""),
            quote(ti.run_id, safe=""),
            quote(ti.task_id, safe=""),
            ti.map_index,
            APPROVE,
            REJECT,
            deadline.isoformat() if deadline else "any time",
        )
        kwargs = {"asked": asked.model_dump(mode="json")}
        if TaskAwaitingInput is not None:  # Airflow 3.3: no trigger, no triggerer
            raise TaskAwaitingInput(method_name=RESUME_METHOD, kwargs=kwargs, timeout=timeout)
        self.defer(
            trigger=HITLTrigger(
                ti_id=ti.id,
                options=[APPROVE, REJECT],
                params={},
                defaults=None,
                multiple=False,
                timeout_datetime=deadline,
                poke_interval=POLL_SECONDS,
            ),
            method_name=RESUME_METHOD,
            kwargs=kwargs,
        )

    def execute_approved(self, context: Context, event: Any = None, asked: Any = None) -> Any:
        """Resume with the person's answer: fail on *Reject* or no answer, else submit."""
        try:
            answer = Answer.model_validate(event or {})
            record = ApprovalRecord.model_validate(asked) if asked else None
        except ValidationError as exc:
            raise AirflowFailException(
                f"The spend approval's answer could not be read ({exc}): nothing was sent."
            ) from None
        what = (
            f" (expected ${record.expected_usd:,.4f}, worst case ${record.worst_usd:,.4f}, "
            f"approve_over_usd ${record.approve_over_usd:,.4f})"
            if record
            else ""
        )
        if answer.error_type == "timeout" or (answer.timedout and not answer.chosen_options):
            limit = f" ({self.approval_timeout:.0f}s)" if self.approval_timeout is not None else ""
            raise AirflowFailException(
                f"No one answered the spend approval within approval_timeout{limit}{what}: "
                "nothing was sent. Clear the task to ask again."
            )
        if answer.error is not None:
            raise AirflowFailException(
                f"The spend approval failed ({answer.error_type}: {answer.error}){what}: "
                "nothing was sent."
            )
        if answer.chosen_options != [APPROVE]:
            _rejected(answer, what)
        allowed = {a["id"] for a in self.approvers}
        if allowed and answer.user_id not in allowed:
            raise AirflowFailException(
                f"The spend approval was answered by {answer.who}, who is not among the "
                f"approvers ({', '.join(sorted(allowed))}){what}: nothing was sent. Clear the "
                "task to ask again."
            )
        return self.submit_approved(context, Approved(answer, record))


def _rejected(answer: Answer, what: str) -> NoReturn:
    chosen = ", ".join(answer.chosen_options) or "nothing"
    verb = "rejected" if answer.chosen_options == [REJECT] else f"answered {chosen!r} to"
    raise AirflowFailException(
        f"{answer.who} {verb} the spend approval at {answer.when}{what}: nothing was sent. "
        "Clear the task to ask again."
    )


def _record(fingerprint: str, estimate: Estimate, limit: float) -> ApprovalRecord:
    return ApprovalRecord(
        fingerprint=fingerprint,
        expected_usd=round(estimate.expected_usd, 6),
        worst_usd=round(estimate.worst_usd, 6),
        requests=estimate.requests,
        approve_over_usd=limit,
    )


def _by(record: ApprovalRecord) -> tuple[str, str]:
    at = record.approved_at.isoformat() if record.approved_at else "(time not recorded)"
    return record.approved_by or "(no user recorded)", at


def _ui_link(ti: Any) -> str:
    base = conf.get("api", "base_url", fallback=None)
    if not base:
        return ""
    path = "/".join(quote(p, safe="") for p in (ti.dag_id, "runs", ti.run_id, "tasks", ti.task_id))
    return f" ({base.rstrip('/')}/dags/{path}/required_actions)"

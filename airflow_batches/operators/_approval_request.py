"""What a spend approval asks, of whom, and what comes back (``_approval`` does the asking).

:class:`ApprovalRecord` is what a person was asked to approve (kept in the task state store
and in the resume's kwargs); :class:`Answer` the HITL answer the task resumes with;
:func:`approver_list` checks ``approvers``; :func:`approval_body` is the request's text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from airflow_batches.jobs import job_key
from airflow_batches.jobs.cost import Estimate

APPROVE: Final = "Approve"
REJECT: Final = "Reject"
_SLACK: Final = 1e-9


class ApprovalRecord(BaseModel):
    """What a person was asked to approve, and who approved it when they have."""

    model_config = ConfigDict(extra="ignore")

    fingerprint: str
    expected_usd: float
    worst_usd: float
    requests: int
    approve_over_usd: float
    approved_by: str | None = None
    approved_at: datetime | None = None

    def covers(self, fingerprint: str, estimate: Estimate) -> bool:
        """Whether this is the job asked about: the same requests, no dearer than shown."""
        return fingerprint == self.fingerprint and estimate.expected_usd <= (
            self.expected_usd * (1 + 1e-6) + _SLACK
        )


class Answer(BaseModel):
    """The event a HITL request resumes the task with (``HITLTrigger``'s, or on Airflow 3.3
    the API's and the scheduler's, which write the same keys)."""

    model_config = ConfigDict(extra="ignore")

    chosen_options: list[str] = []
    responded_by_user: dict[str, Any] | None = None
    responded_at: datetime | None = None
    timedout: bool = False
    error: str | None = None
    error_type: str | None = None

    @property
    def user_id(self) -> str | None:
        uid = (self.responded_by_user or {}).get("id")
        return None if uid is None else str(uid)

    @property
    def who(self) -> str:
        user = self.responded_by_user or {}
        name, uid = user.get("name"), user.get("id")
        if not name and not uid:
            return "(no user recorded)"
        return f"{name} (id {uid})" if name and uid and str(uid) != str(name) else str(name or uid)

    @property
    def when(self) -> str:
        return self.responded_at.isoformat() if self.responded_at else "(time not recorded)"


MAX_APPROVERS: Final = 100
"""The most approvers one submit may name (``approvers``)."""


def approver_list(approvers: Sequence[str | Mapping[str, str]] | None) -> list[dict[str, str]]:
    """``approvers`` as Airflow's HITL users (``{"id", "name"}``), checked when the DAG is
    parsed: non-empty strings, no duplicate id, at most :data:`MAX_APPROVERS`."""
    if approvers is None:
        return []
    if isinstance(approvers, str | bytes | Mapping) or not isinstance(approvers, Sequence):
        raise ValueError(
            f"approvers must be a list of user ids or {{'id', 'name'}} dicts, got {approvers!r}"
        )
    if not approvers or len(approvers) > MAX_APPROVERS:
        raise ValueError(
            f"approvers must name 1 to {MAX_APPROVERS} users (None: anyone may answer), got "
            f"{len(approvers)}"
        )
    users: dict[str, dict[str, str]] = {}
    for n, entry in enumerate(approvers):
        if isinstance(entry, Mapping) and set(entry) <= {"id", "name"}:
            uid, name = entry.get("id"), entry.get("name", entry.get("id"))
        else:
            uid = name = entry if isinstance(entry, str) else None
        if not (isinstance(uid, str) and uid.strip() and isinstance(name, str) and name.strip()):
            raise ValueError(
                f"approvers[{n}] must be a non-empty user id or a dict with a non-empty 'id' "
                f"(and optionally 'name'), got {entry!r}"
            )
        if uid in users:
            raise ValueError(f"approvers[{n}]: {uid!r} is named twice")
        users[uid] = {"id": uid, "name": name}
    return list(users.values())


def approval_body(
    estimate: Estimate,
    asked: ApprovalRecord,
    batches: int,
    deadline: datetime | None,
    approvers: Sequence[Mapping[str, str]] = (),
) -> str:
    """The request a person reads (Markdown): the figures per model, the worst case, the
    request and batch counts, what each answer does and who may give it."""
    lines = [
        f"**Expected cost ${estimate.expected_usd:,.4f}** at batch prices, over the approval "
        f"amount of ${asked.approve_over_usd:,.4f}; **worst case ${estimate.worst_usd:,.4f}** "
        "(no cache hits, every output at max_tokens).",
        "",
        f"{estimate.requests:,} request(s) in {batches} batch(es); nothing has been sent yet.",
        "",
        "| Model | Requests | Expected | Worst case |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, m in sorted(estimate.models.items()):
        expected = "unpriced" if m.expected_usd is None else f"${m.expected_usd:,.4f}"
        worst = "unpriced" if m.worst_usd is None else f"${m.worst_usd:,.4f}"
        lines.append(f"| {name} | {m.requests:,} | {expected} | {worst} |")
    if estimate.unpriced_models:
        lines += [
            "",
            f"No price known for {', '.join(estimate.unpriced_models)}: their cost is not in "
            "the figures above.",
        ]
    lines += [
        "",
        f"**{APPROVE}** creates the batches; **{REJECT}** fails the task with nothing sent"
        + (f"; no answer by {deadline:%Y-%m-%d %H:%M} UTC does the same." if deadline else "."),
        "",
    ]
    if approvers:
        names = ", ".join(
            a["name"] if a["name"] == a["id"] else f"{a['name']} ({a['id']})" for a in approvers
        )
        lines += [f"Only {names} may answer.", ""]
    lines += [
        f"Job `{job_key(asked.fingerprint)}` (fingerprint of the requests).",
    ]
    return "\n".join(lines)

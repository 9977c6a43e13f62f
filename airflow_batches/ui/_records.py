"""What the operators recorded, read from Airflow's metadata database in a few queries.

Each of our tasks leaves, when it ends, the XCom of its extra link (``_link_<class>``; the
``xcom.key`` column is indexed): :func:`marked_tasks` finds the tasks of one kind through it,
with their task instance and run, and the XComs named in ``values`` (the submit's job
descriptor, the evaluation's summary and files) in the same query. Nothing here reads
storage or calls the API, and no query runs per job: a page costs the same few queries
whatever the number of jobs (``limit`` rows at most each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from airflow.models.asset import AssetEvent
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from sqlalchemy import and_, select, tuple_
from sqlalchemy.orm import Session, aliased

from airflow_batches.operators._links import (
    EVAL_FILES_KEY,
    EvalReportLink,
    FetchBatchesLink,
    SubmitBatchesLink,
)

__all__ = [
    "EVALUATE_MARK",
    "EVAL_FILES_KEY",
    "FETCH_MARK",
    "RETURN_VALUE",
    "SUBMIT_MARK",
    "TaskRecord",
    "asset_event_runs",
    "marked_tasks",
    "with_values",
]

SUBMIT_MARK = SubmitBatchesLink().xcom_key
FETCH_MARK = FetchBatchesLink().xcom_key
EVALUATE_MARK = EvalReportLink().xcom_key
RETURN_VALUE = "return_value"

IN_CLAUSE_LIMIT = 500
"""Above this many readable DAGs, the DAG filter is applied to the rows rather than in SQL."""


@dataclass(frozen=True)
class TaskRecord:
    """One task instance of ours: where it ran, how it ended, what it left in XCom."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    run_state: str | None
    run_after: datetime | None
    ended_at: datetime | None
    mark: Any
    """The value of the XCom that marks the kind of task (its extra link)."""
    values: Mapping[str, Any] = field(default_factory=dict)
    """The other XComs asked for, by key (absent when the task left none)."""


def _decode(raw: Any) -> Any:
    """An XCom value as the task pushed it (JSON in the database, decoded as Airflow does)."""
    if raw is None:
        return None
    return XComModel.deserialize_value(SimpleNamespace(value=raw))


def marked_tasks(
    session: Session,
    mark: str,
    *,
    dag_ids: Collection[str],
    since: datetime | None = None,
    values: Sequence[str] = (),
    run: tuple[str, str] | None = None,
    limit: int = 5000,
) -> list[TaskRecord]:
    """The task instances marked ``mark`` in readable DAGs, newest run first.

    ``since`` keeps the tasks whose mark was written since then; ``run`` (dag_id, run_id) one
    run's; ``values`` the XCom keys to read beside the mark (``None`` when absent).
    """
    if not dag_ids:
        return []
    marker = aliased(XComModel)
    ti = TaskInstance
    columns: list[Any] = [
        marker.dag_id,
        marker.run_id,
        marker.task_id,
        marker.map_index,
        marker.value,
        ti.state,
        ti.try_number,
        ti.end_date,
        DagRun.state,
        DagRun.run_after,
    ]
    query = (
        select(*columns)
        .select_from(marker)
        .join(
            ti,
            and_(
                ti.dag_id == marker.dag_id,
                ti.run_id == marker.run_id,
                ti.task_id == marker.task_id,
                ti.map_index == marker.map_index,
            ),
        )
        .join(DagRun, DagRun.id == marker.dag_run_id)
        .where(marker.key == mark)
    )
    for key in values:
        other = aliased(XComModel)
        query = query.outerjoin(
            other,
            and_(
                other.dag_run_id == marker.dag_run_id,
                other.task_id == marker.task_id,
                other.map_index == marker.map_index,
                other.key == key,
            ),
        ).add_columns(other.value)
    if run is not None:
        query = query.where(marker.dag_id == run[0], marker.run_id == run[1])
    elif len(dag_ids) <= IN_CLAUSE_LIMIT:
        query = query.where(marker.dag_id.in_(sorted(dag_ids)))
    if since is not None:
        query = query.where(marker.timestamp >= since)
    query = query.order_by(DagRun.run_after.desc(), marker.task_id).limit(limit)
    records = []
    for row in session.execute(query):
        dag_id, run_id, task_id, map_index, mark_value, state, tries, ended, run_state, after = row[
            :10
        ]
        if dag_id not in dag_ids:
            continue
        found = {key: _decode(raw) for key, raw in zip(values, row[10:], strict=True)}
        records.append(
            TaskRecord(
                dag_id=dag_id,
                run_id=run_id,
                task_id=task_id,
                map_index=map_index,
                state=_text(state),
                try_number=int(tries or 0),
                run_state=_text(run_state),
                run_after=after,
                ended_at=ended,
                mark=_decode(mark_value),
                values={k: v for k, v in found.items() if v is not None},
            )
        )
    return records


def with_values(
    session: Session, records: Sequence[TaskRecord], keys: Sequence[str], *, chunk: int = 200
) -> list[TaskRecord]:
    """``records`` with the XComs ``keys`` of each read (by the indexed task instance columns,
    ``chunk`` task instances a query): for when the marks were read first, without values,
    to choose which tasks are worth reading."""
    found: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    ids = [(r.dag_id, r.run_id, r.task_id, r.map_index) for r in records]
    for start in range(0, len(ids), chunk):
        x = XComModel
        query = select(x.dag_id, x.run_id, x.task_id, x.map_index, x.key, x.value).where(
            tuple_(x.dag_id, x.run_id, x.task_id, x.map_index).in_(ids[start : start + chunk]),
            x.key.in_(list(keys)),
        )
        for dag_id, run_id, task_id, map_index, key, raw in session.execute(query):
            value = _decode(raw)
            if value is not None:
                found.setdefault((dag_id, run_id, task_id, map_index), {})[key] = value
    return [
        dataclasses.replace(
            r, values={**r.values, **found.get((r.dag_id, r.run_id, r.task_id, r.map_index), {})}
        )
        for r in records
    ]


def asset_event_runs(
    session: Session, tasks: Iterable[tuple[str, str]], *, since: datetime | None = None
) -> set[tuple[str, str, str]]:
    """``(dag_id, task_id, run_id)`` of the runs in which these tasks emitted an Asset event:
    the evaluations that passed their thresholds (the next night's baseline)."""
    wanted = set(tasks)
    if not wanted:
        return set()
    query = select(
        AssetEvent.source_dag_id, AssetEvent.source_task_id, AssetEvent.source_run_id
    ).where(AssetEvent.source_dag_id.in_(sorted({d for d, _ in wanted})))
    if since is not None:
        query = query.where(AssetEvent.timestamp >= since)
    return {
        (str(dag_id), str(task_id), str(run_id))
        for dag_id, task_id, run_id in session.execute(query)
        if (dag_id, task_id) in wanted
    }


def _text(state: Any) -> str | None:
    """A state column as text (an enum on some releases, a string on others)."""
    if state is None:
        return None
    return str(getattr(state, "value", state))

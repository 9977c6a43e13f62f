"""What one page view shows one user: the jobs in flight and the evaluations over time.

Per view: a handful of queries of the metadata database (``_records``), at most one listing
per connection (cached: ``_listing``), and the summaries of the nights that left no return
value (read once: ``_evaluations.SummaryReader``). Everything is filtered by what the user
may read (``_access``) before anything else is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_batches.ui._access import Access
from airflow_batches.ui._evaluations import Evaluation, SummaryReader, evaluations
from airflow_batches.ui._jobs import (
    JobView,
    fetched_jobs,
    job_views,
    oldest_per_connection,
    submitted_jobs,
)
from airflow_batches.ui._listing import ListingCache, hook_lister
from airflow_batches.ui._records import (
    EVAL_FILES_KEY,
    EVALUATE_MARK,
    FETCH_MARK,
    RETURN_VALUE,
    SUBMIT_MARK,
    TaskRecord,
    asset_event_runs,
    marked_tasks,
    with_values,
)

__all__ = ["IN_FLIGHT_DAYS", "MAX_JOBS", "MAX_NIGHTS", "Board", "Scope"]

IN_FLIGHT_DAYS = 30
"""How far back the page looks for jobs not yet fetched: results are kept 29 days, so an
older job can no longer be fetched."""
MAX_JOBS = 5000
"""The newest submits (and fetches, and evaluation nights) one view reads at most."""
MAX_NIGHTS = 90
"""The most nights of one evaluation a view shows (``nights=``; 14 by default)."""


@dataclass(frozen=True)
class Scope:
    """What a view is narrowed to: one DAG, or one run of it."""

    dag_id: str | None = None
    run_id: str | None = None

    @property
    def run(self) -> tuple[str, str] | None:
        return (self.dag_id, self.run_id) if self.dag_id and self.run_id else None


class Board:
    """The page's data, with the caches shared by every view of one api-server process."""

    def __init__(
        self,
        listings: ListingCache | None = None,
        summaries: SummaryReader | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.listings = listings or ListingCache(hook_lister())
        self.summaries = summaries or SummaryReader()
        self.now = now

    def _readable(self, access: Access, scope: Scope) -> set[str]:
        dags = access.dags()
        return dags & {scope.dag_id} if scope.dag_id else dags

    def jobs(
        self, access: Access, session: Any, scope: Scope = Scope(), *, include_fetched: bool = False
    ) -> list[JobView]:
        """The jobs submitted and not yet fetched (with ``include_fetched``, every job)."""
        dags = self._readable(access, scope)
        since = None if scope.run else self.now() - timedelta(days=IN_FLIGHT_DAYS)
        submits = marked_tasks(
            session,
            SUBMIT_MARK,
            dag_ids=dags,
            since=since,
            values=[RETURN_VALUE],
            run=scope.run,
            limit=MAX_JOBS,
        )
        allowed = access.may_read_records(r.dag_id for r in submits)
        submits = [r for r in submits if r.dag_id in allowed]
        fetches = marked_tasks(
            session,
            FETCH_MARK,
            dag_ids=allowed,
            since=since,
            values=[RETURN_VALUE] if include_fetched else [],
            run=scope.run,
            limit=MAX_JOBS,
        )
        found = submitted_jobs(submits, fetched_jobs(fetches), include_fetched=include_fetched)
        listings = {
            conn_id: self.listings.get(conn_id, oldest)
            for conn_id, oldest in oldest_per_connection(found).items()
        }
        return job_views(found, listings)

    def evaluations(
        self, access: Access, session: Any, scope: Scope = Scope(), *, nights: int = 14
    ) -> list[Evaluation]:
        """Each evaluation's last ``nights`` nights (the nights of the run, for a run)."""
        nights = max(1, min(nights, MAX_NIGHTS))
        dags = self._readable(access, scope)
        marks = marked_tasks(session, EVALUATE_MARK, dag_ids=dags, run=scope.run, limit=MAX_JOBS)
        allowed = access.may_read_records(r.dag_id for r in marks)
        chosen = _last_nights([r for r in marks if r.dag_id in allowed], nights)
        records = with_values(session, chosen, [RETURN_VALUE, EVAL_FILES_KEY])
        emitted = asset_event_runs(session, {(r.dag_id, r.task_id) for r in records})
        return evaluations(records, emitted=emitted, read_summary=self.summaries, nights=nights)


def _last_nights(records: list[TaskRecord], nights: int) -> list[TaskRecord]:
    """The newest ``nights`` records of each evaluation (``records`` come newest first)."""
    kept: dict[tuple[str, str, int], int] = {}
    chosen = []
    for record in records:
        key = (record.dag_id, record.task_id, record.map_index)
        if kept.get(key, 0) < nights:
            kept[key] = kept.get(key, 0) + 1
            chosen.append(record)
    return chosen

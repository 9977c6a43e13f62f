"""A fetch's destination belongs to one run: the submit checks the destination of every fetch
downstream of it before anything is paid (the fetch claims it itself, before anything is
resent: ``jobs/results/_owner``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_batches._compat import ObjectStoragePath
from airflow_batches.jobs.results import check_destination, file_names
from airflow_batches.operators._common import storage_path
from airflow_batches.operators._runs import run_ref, run_state
from airflow_batches.operators.fetch import FetchResultsOperator

if TYPE_CHECKING:
    from airflow_batches._compat import BaseOperator, Context


def check_downstream_destinations(task: BaseOperator, context: Context) -> None:
    """Refuse to submit when a fetch downstream of ``task`` would refuse its destination.

    Each ``FetchResultsOperator`` downstream (not ``overwrite``) has its destination rendered
    with this run's context; one that holds another run's results (or is claimed by another
    run still going) fails the submit before anything is validated or sent. A destination
    that cannot be rendered yet (it reads an XCom of a later task) is left to the fetch.
    """
    for fetch in task.get_flat_relatives(upstream=False):
        if not isinstance(fetch, FetchResultsOperator) or fetch.options.overwrite:
            continue
        destination = _rendered(fetch, context, task)
        if destination is None:
            continue
        check_destination(
            destination,
            run_ref(context, task_id=fetch.task_id),
            names=file_names(fetch.options.split_by_type).values(),
            is_running=run_state(context),
            outcome=f"nothing was submitted (the fetch {fetch.task_id!r} would refuse it)",
            log=task.log,
        )


def _rendered(fetch: FetchResultsOperator, context: Context, task: BaseOperator) -> Any:
    value = fetch.destination
    if isinstance(value, ObjectStoragePath):
        return value
    if not isinstance(value, str):
        return None  # None (results to XCom), or an XComArg known only to the fetch
    try:
        text = fetch.render_template(value, context)
    except Exception as exc:  # it needs what only the fetch's own run has
        task.log.info(
            "Destination of %r not checked before submitting (%s): the fetch checks it",
            fetch.task_id,
            exc,
        )
        return None
    if not isinstance(text, str) or not text or text == "None":
        return None
    return storage_path(text, fetch.destination_conn_id)

"""A fetch's destination belongs to one run: checked by the submit before anything is paid,
claimed by the fetch before anything is resent (``jobs/_owner``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_batches._compat import ObjectStoragePath
from airflow_batches.jobs.results import IsRunning, RunRef, check_destination, file_names
from airflow_batches.operators._common import storage_path

if TYPE_CHECKING:
    from airflow_batches._compat import BaseOperator, Context

_OVER = frozenset({"success", "failed"})


def run_ref(context: Context, task_id: str | None = None) -> RunRef:
    """The task run of ``context`` (or the task ``task_id`` of the same run)."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return RunRef(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=task_id or ti.task_id,
        map_index=-1 if task_id or map_index is None else map_index,
    )


def run_state(context: Context) -> IsRunning:
    """Asks Airflow whether a run is still going; None when it cannot tell."""
    ti = context["ti"]

    def is_running(run: RunRef) -> bool | None:
        try:
            state = ti.get_dagrun_state(dag_id=run.dag_id, run_id=run.run_id)
        except Exception:  # no such run (deleted), or a runner without the call
            return None
        return str(getattr(state, "value", state)) not in _OVER

    return is_running


def check_downstream_destinations(task: BaseOperator, context: Context) -> None:
    """Refuse to submit when a fetch downstream of ``task`` would refuse its destination.

    Each ``FetchResultsOperator`` downstream (not ``overwrite``) has its destination rendered
    with this run's context; one that holds another run's results (or is claimed by another
    run still going) fails the submit before anything is validated or sent. A destination
    that cannot be rendered yet (it reads an XCom of a later task) is left to the fetch.
    """
    from airflow_batches.operators.fetch import FetchResultsOperator

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


def _rendered(fetch: Any, context: Context, task: BaseOperator) -> Any:
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

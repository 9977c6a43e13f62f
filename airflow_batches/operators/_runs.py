"""The task run an operator works for, as a ``RunRef``, and whether another run is still going:
what a fetch's destination is claimed for and checked against (``jobs/results/_owner``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_batches.jobs.results import IsRunning, RunRef

if TYPE_CHECKING:
    from airflow_batches._compat import Context

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

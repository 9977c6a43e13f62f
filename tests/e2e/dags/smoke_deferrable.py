"""DAGs that prove the live-stack harness (tests/e2e/live.py) against Airflow's own code.

``smoke_deferrable``: a deferrable sensor from the standard provider hands its wait to the
triggerer, a worker resumes it when the trigger fires, and a plain task runs after it.

``smoke_on_kill``: a task defers to ``OnKillProbeTrigger``, which waits until a user kills the
task and then leaves a marker file from ``on_kill()``. The triggerer imports the trigger as
``smoke_deferrable.OnKillProbeTrigger``, so this DAG needs the DAGs folder on its PYTHONPATH.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, BaseOperator, Param, task
from airflow.triggers.base import BaseTrigger, TriggerEvent

_START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG(
    dag_id="smoke_deferrable",
    schedule=None,
    start_date=_START,
    catchup=False,
    params={"wait_seconds": Param(10, type="integer", minimum=0)},
    tags=["e2e"],
):
    # The sensor always defers, even when the target time has already passed, so the run
    # goes through the triggerer however slowly the stack picks it up. Ten seconds, so the
    # trigger does not fire before the scheduler has handled the deferral's report (Airflow's
    # own race otherwise fails the task: docs/compatibility.md).
    # One retry: the race still struck once in a loaded fresh-clone run on 3.2 (the test then
    # checks that the retry deferred and resumed).
    wait = DateTimeSensorAsync(
        task_id="wait",
        retries=1,
        retry_delay=pendulum.duration(seconds=1),
        target_time=(
            "{{ (dag_run.run_after + macros.timedelta(seconds=params.wait_seconds)).isoformat() }}"
        ),
    )

    @task
    def after_wait() -> str:
        return "resumed"

    wait >> after_wait()


class OnKillProbeTrigger(BaseTrigger):
    """Waits until cancelled; ``on_kill`` writes ``marker_path`` so a test can see it ran."""

    def __init__(self, marker_path: str) -> None:
        super().__init__()
        self.marker_path = marker_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # The DAG processor loads this file under a generated module name; the triggerer must
        # import it under the plain one.
        return ("smoke_deferrable.OnKillProbeTrigger", {"marker_path": self.marker_path})

    async def run(self) -> Any:
        self.log.info("probe trigger waiting to be killed")
        await asyncio.Event().wait()
        yield TriggerEvent("not reached: only a user action ends this trigger")

    async def on_kill(self) -> None:
        await asyncio.to_thread(self._write_marker)
        self.log.info("probe trigger on_kill wrote %s", self.marker_path)

    def _write_marker(self) -> None:
        # Renamed into place, so a test polling for the file never reads it half-written.
        partial = Path(f"{self.marker_path}.partial")
        partial.write_text("on_kill called\n")
        partial.replace(self.marker_path)


class DeferUntilKilled(BaseOperator):
    template_fields = ("marker_path",)

    def __init__(self, *, marker_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker_path = marker_path

    def execute(self, context: Any) -> None:
        # The timeout bounds the trigger's life should a test die before it kills the task.
        self.defer(
            trigger=OnKillProbeTrigger(marker_path=self.marker_path),
            method_name="execute_complete",
            timeout=timedelta(minutes=10),
        )

    def execute_complete(self, context: Any, event: Any = None) -> None:
        raise RuntimeError(f"the probe trigger should never fire, got {event!r}")


with DAG(
    dag_id="smoke_on_kill",
    schedule=None,
    start_date=_START,
    catchup=False,
    tags=["e2e"],
):
    DeferUntilKilled(task_id="deferred", marker_path="{{ dag_run.conf['marker_path'] }}")

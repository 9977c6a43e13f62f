"""Run real DAGs in-process with ``dag.test()`` against the emulator over loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.testing import RunningEmulator
from tests.airflow_release import HAS_STATE_AUDIT_LOG

CONN_ID = "message_batches_default"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the session's SQLite metadata DB once (tests/conftest.py chose its home), and
    give ``dag.test()`` one in-process execution API for the session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    _one_in_process_api()


def _one_in_process_api() -> None:
    """One in-process execution API for the whole session, as Airflow 3.3 has it.

    Before 3.3, ``dag.test()`` built a new execution API app (Cadwyn's versioned routers,
    about a second of CPU) and a new event-loop thread for every task it ran; 3.3 caches the
    one it makes. Caching it here too makes the older releases' runs as fast, with the same
    semantics: each task still gets its own client and the DAG's own ``dag_bag`` override.
    """
    import functools

    from airflow.sdk.execution_time import supervisor

    make = supervisor.in_process_api_server
    if not hasattr(make, "cache_info"):  # 3.3 caches it already
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(make)


@dataclass
class DagResult:
    dag_id: str
    run_id: str
    state: str
    states: dict[str, str | None]
    xcoms: dict[str, Any] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)
    """Task state changes from the audit log, in order: running, deferred, running, ..."""

    def xcom(self, task_id: str) -> Any:
        return self.xcoms.get(task_id)


class DagRunner:
    """Writes a DAG file into the DAGs folder and runs it with ``dag.test()``."""

    def __init__(self, emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.staging = tmp_path / "staging"
        self.results = tmp_path / "results"
        self.monkeypatch = monkeypatch
        self.set_connection()
        monkeypatch.setenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH", f"file://{self.staging}")

    def set_connection(self, conn_id: str = CONN_ID, **extra: Any) -> None:
        conn = {
            "conn_type": "message_batches",
            "host": self.emulator.base_url,
            "password": self.emulator.api_key,
            "extra": {"max_retries": 2, **extra},
        }
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    def run(self, body: str, *, dag_id: str | None = None, **values: Any) -> DagResult:
        """Run a DAG whose tasks are defined by ``body`` (inside ``with DAG(...)``).

        ``values`` become module-level names of the DAG file (their ``repr``), plus
        ``RESULTS`` and ``STAGING`` (file:// URIs under the test's tmp_path).
        """
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # Airflow 3.1
            from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        dag_id = dag_id or f"t_{uuid.uuid4().hex[:10]}"
        for old in self.dags_folder.glob("*.py"):
            old.unlink()
        values = {
            "RESULTS": f"file://{self.results}",
            "STAGING": f"file://{self.staging}",
            **values,
        }
        source = (
            "from datetime import datetime, timedelta\n"
            "from airflow.sdk import DAG, Asset, task\n"
            "from airflow_batches import *\n"
            + "".join(f"{name} = {value!r}\n" for name, value in values.items())
            + f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
            + textwrap.indent(textwrap.dedent(body), "    ")
        )
        (self.dags_folder / f"{dag_id}.py").write_text(source)
        bag = DagBag(str(self.dags_folder))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None
        with _state_changes() as changes:
            run = dag.test(logical_date=datetime.now(UTC))
        return self._collect(dag_id, run, changes)

    def _collect(self, dag_id: str, run: Any, changes: list[tuple[str, str]]) -> DagResult:
        from airflow.models.log import Log
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
                )
            ).all()
            states = {ti.task_id: (str(ti.state) if ti.state else None) for ti in tis}
            tries = {ti.task_id: ti.try_number for ti in tis}
            rows = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run.run_id,
                    XComModel.key == "return_value",
                )
            ).all()
            xcoms = {row.task_id: _load(row.value) for row in rows}
            events: dict[str, list[str]] = {}
            for log in session.scalars(
                select(Log).where(Log.dag_id == dag_id, Log.run_id == run.run_id).order_by(Log.id)
            ):
                if log.task_id:
                    events.setdefault(log.task_id, []).append(log.event)
            if not HAS_STATE_AUDIT_LOG:  # Airflow 3.1 writes no audit-log row for a state
                events = {}  # change (a user's action through the API, it does)
                task_ids = {str(ti.id): ti.task_id for ti in tis}
                for ti_id, state in changes:
                    if ti_id in task_ids:
                        events.setdefault(task_ids[ti_id], []).append(state)
        return DagResult(dag_id, run.run_id, str(run.state), states, xcoms, tries, events)


@contextmanager
def _state_changes() -> Iterator[list[tuple[str, str]]]:
    """(ti id, state) for each state change the execution API logs while the block runs.

    Airflow 3.2 and later record these in the audit log; 3.1 only logs them, so they are
    picked from its log events here.
    """
    import structlog

    changes: list[tuple[str, str]] = []

    def record(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        seen = {**structlog.contextvars.get_contextvars(), **event}  # the route binds ti_id
        if "ti_id" in seen:
            if seen.get("event") == "Task started":
                changes.append((str(seen["ti_id"]), "running"))
            elif seen.get("event") == "Task instance state updated" and "new_state" in seen:
                changes.append((str(seen["ti_id"]), str(seen["new_state"])))
        return event

    # In place: loggers already bound hold this very list.
    processors = structlog.get_config()["processors"]
    processors.insert(0, record)
    try:
        yield changes
    finally:
        processors.remove(record)


def _load(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@contextmanager
def held_until(
    emulator: RunningEmulator, condition: Callable[[], bool], *, timeout: float = 120
) -> Iterator[None]:
    """Batches make no progress until ``condition()`` holds (a watcher thread checks it).

    Proves that a wait polled while work was left, however slow the machine or the Airflow
    release is to start the waiting task. A condition never met fails the test (the batches
    are let go after ``timeout`` seconds, so the run still ends).
    """
    emulator.configure(paused=True)
    met: list[bool] = []

    def watch() -> None:
        try:
            emulator.wait_until(condition, timeout=timeout)
            met.append(True)
        except TimeoutError:
            met.append(False)
        finally:
            emulator.configure(paused=False)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        watcher.join(timeout=5)
    assert met == [True], f"the batches were held {timeout}s: the condition was never met"


@pytest.fixture
def dag_runner(
    airflow_db: None, emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> DagRunner:
    return DagRunner(emulator, tmp_path, monkeypatch)


def make_requests(n: int, *, prefix: str = "r", **params: Any) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 32,
                "messages": [{"role": "user", "content": f"question {i}"}],
                **params,
            },
        }
        for i in range(n)
    ]

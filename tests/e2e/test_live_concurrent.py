"""Concurrent jobs in one workspace on a live stack: two DAG runs submit jobs of identical
sizes; one run's submit task is killed (kill -9) inside its create call, the other loses its
create answer. Every run must publish exactly its own requests' results, and no batch may be
read by two runs. Prints the figure of extra batches paid (the price of ambiguity)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from tests.e2e.live import LiveAirflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "concurrent_dags"
DAG_ID = "concurrent_jobs"
API_KEY = "sk-ant-api03-LIVE-never-stored-8d1f0c4e2b"


@pytest.fixture(scope="module")
def live_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    data = tmp_path_factory.mktemp("emulator")
    config = EmulatorConfig(latency=0.05, workers=2, workspaces={"default": [API_KEY]})
    with serve_emulator(config, data_dir=data) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"results": tmp_path_factory.mktemp("results"), "staging": tmp_path_factory.mktemp("st")}


@pytest.fixture(scope="module")
def stack(
    live_airflow_factory: Any, live_emulator: RunningEmulator, folders: dict[str, Path]
) -> LiveAirflow:
    conn = {
        "conn_type": "message_batches",
        "host": live_emulator.base_url,
        "password": API_KEY,
    }
    env = {
        "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(conn),
        "LIVE_RESULTS": f"file://{folders['results']}",
        "AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH": f"file://{folders['staging']}",
        # A killed task's try is failed (and retried) in seconds, not after five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
    }
    stack: LiveAirflow = live_airflow_factory(DAGS, env=env)
    return stack


def task_processes(ti_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if ti_id in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_task(stack: LiveAirflow, run_id: str, task_id: str) -> int:
    """kill -9 the process running a task instance (its supervisor reports the death)."""
    ti_id = stack.task_instance(DAG_ID, run_id, task_id)["id"]
    deadline = time.monotonic() + 30
    while not (procs := task_processes(ti_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no process runs {task_id} of {run_id}")
        time.sleep(0.1)
    # The deepest one runs the task's code; its parent supervises it.
    pids = {p.pid for p in procs}
    runners = [p for p in procs if p.ppid() in pids] or procs
    for proc in runners:
        os.kill(proc.pid, signal.SIGKILL)
    return len(runners)


def owners(emulator: RunningEmulator) -> dict[str, str]:
    """batch id -> the run whose requests it holds (from the ids the emulator received)."""
    out = {}
    for batch in emulator.admin.batches():
        tags = {r["custom_id"].rsplit("-", 1)[0] for r in emulator.admin.requests(batch["id"])}
        assert len(tags) == 1, (batch["id"], tags)
        out[batch["id"]] = tags.pop()
    return out


def test_concurrent_runs_never_take_each_others_batches(
    stack: LiveAirflow, live_emulator: RunningEmulator, folders: dict[str, Path]
) -> None:
    # Run a's first create is held 8 s before the API handles it: long enough to kill -9 the
    # task inside its create call. The API still makes the batch from the body it received.
    live_emulator.configure(
        faults={"create": {"rate_slow": 1.0, "slow_seconds": 8, "max_count": 1}}
    )
    run_a = stack.trigger(DAG_ID, conf={"tag": "runa"})
    stack.wait_for_task_state(DAG_ID, run_a, "submit", "running", timeout=120)
    live_emulator.wait_until(
        lambda: (
            live_emulator.admin.stats()["endpoints"]
            .get("create", {})
            .get("faults", {})
            .get("slow", 0)
            == 1
        ),
        timeout=60,
    )
    # Meanwhile run b, of the same size, loses its create answer (the batch is made).
    live_emulator.configure(faults={"create": {"rate_drop_after": 1.0, "max_count": 1}})
    run_b = stack.trigger(DAG_ID, conf={"tag": "runb"})
    assert kill_task(stack, run_a, "submit") >= 1

    for run in (run_a, run_b):
        stack.wait_for_run(DAG_ID, run, timeout=300)
    live_emulator.wait_until(lambda: bool(live_emulator.admin.batches()), timeout=5)
    owner = owners(live_emulator)

    published: dict[str, set[str]] = {}
    read_by: dict[str, list[str]] = {}
    for tag in ("runa", "runb"):
        folder = folders["results"] / tag
        lines = [json.loads(x) for x in (folder / "results.jsonl").read_bytes().splitlines()]
        published[tag] = {x["custom_id"] for x in lines}
        manifest = json.loads((folder / "manifest.json").read_text())
        for batch_id in manifest["batch_ids"]:
            read_by.setdefault(batch_id, []).append(tag)
            assert owner[batch_id] == tag, (
                f"{tag} published {batch_id}, a batch of {owner[batch_id]}"
            )
    assert published == {t: {f"{t}-{i}" for i in range(4)} for t in ("runa", "runb")}
    assert all(len(tags) == 1 for tags in read_by.values()), read_by
    tries = stack.task_instance(DAG_ID, run_a, "submit")["try_number"]
    assert tries >= 2  # the killed try, then the retry that re-attached or paid anew
    created = live_emulator.admin.batches_created()
    extra = created - len(read_by)
    print(
        f"\nconcurrent runs: 2, batches created {created}, batches published {len(read_by)}, "
        f"adopted across runs 0, results lost 0, extra batches paid {extra}, "
        f"submit tries of the killed run {tries}"
    )


def test_the_api_key_is_in_no_row_log_or_file(stack: LiveAirflow, folders: dict[str, Path]) -> None:
    """After the runs above: the metadata DB (task instances, XCom, triggers, rendered fields,
    every table), every log and every staged or published file hold no trace of the key."""
    import sqlite3

    needle = API_KEY.encode()
    with sqlite3.connect(stack.db_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"task_instance", "xcom", "trigger", "rendered_task_instance_fields"} <= set(tables)
        rows = 0
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                assert needle not in repr(row).encode(), f"the key is in table {table}"
    assert rows > 0
    scanned = 0
    for root in (stack.home / "logs", stack.home / "components", *folders.values()):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                assert needle not in path.read_bytes(), f"the key is in {path}"
    assert scanned > 10

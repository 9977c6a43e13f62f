"""A newcomer's first hour (issue 28), run as they run it: ``airflow dags test`` in its own
process, the connections stored in the metadata DB with ``airflow connections add``.

The DAGs are ``first_hour_dags/first_hour.py``. Each test fails without the change it covers:
the deferred wait's trigger (run inline by ``dags test``) finding a DB-stored connection; a
second run into the same folder refused before it pays; mistakes no retry can fix failing at
the first try; errors naming what to change.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from tests.operators.conftest import held_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "first_hour_dags"


@dataclass
class Home:
    """An Airflow home of the module's own: SQLite DB, connections added with the CLI."""

    path: Path
    env: dict[str, str]
    results: Path
    emulator: RunningEmulator

    @property
    def airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.airflow, *args],
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )

    def dags_test(self, dag_id: str, logical_date: str | None = None) -> str:
        """``airflow dags test``; its output (stdout and stderr)."""
        run = self.cli("dags", "test", dag_id, *([logical_date] if logical_date else []))
        return run.stdout + run.stderr

    def db(self, query: str, *args: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(f"file:{self.path / 'airflow.db'}?mode=ro", uri=True) as db:
            return db.execute(query, args).fetchall()

    def run_ids(self, dag_id: str) -> list[str]:
        rows = self.db("select run_id from dag_run where dag_id = ? order by id", dag_id)
        return [str(r[0]) for r in rows]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
        """task_id -> (state, try_number)."""
        rows = self.db(
            "select task_id, state, try_number from task_instance where dag_id = ? and run_id = ?",
            dag_id,
            run_id,
        )
        return {str(t): (str(s), int(n)) for t, s, n in rows}  # type: ignore[call-overload]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    tmp = tmp_path_factory.mktemp("first-hour")
    # The responder is chosen at start (the admin view never imports what it is sent).
    config = EmulatorConfig(responder="tests.operators.test_read_results:moderation_responder")
    with serve_emulator(config, data_dir=tmp / "emulator") as emulator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(tmp / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "FIRST_HOUR_RESULTS": f"file://{tmp / 'results'}",
                "FIRST_HOUR_STAGING": f"file://{tmp / 'staging'}",
            }
        )
        made = Home(tmp / "airflow", env, tmp / "results", emulator)
        assert made.cli("db", "migrate").returncode == 0
        for conn_id, host, key, extra in (
            ("message_batches_default", emulator.base_url, emulator.api_key, {}),
            ("mb_wrong_key", emulator.base_url, "not-the-key", {}),
            ("mb_unreachable", f"http://127.0.0.1:{_closed_port()}", "k", {"max_retries": 0}),
        ):
            added = made.cli(
                "connections", "add", conn_id, "--conn-type", "message_batches",
                "--conn-host", host, "--conn-password", key, "--conn-extra", json.dumps(extra),
            )  # fmt: skip
            assert added.returncode == 0, added.stdout + added.stderr
        yield made


def test_a_deferred_wait_reads_a_db_connection_and_a_second_run_that_day_pays_nothing(
    home: Home,
) -> None:
    emulator = home.emulator
    polled = emulator.admin.calls("retrieve")
    # The requests stay unanswered until the wait has polled twice: the sensor's poke in the
    # worker, then the trigger's, which `dags test` runs inline with the DB-stored connection.
    with held_until(emulator, lambda: emulator.admin.calls("retrieve") >= polled + 2, timeout=300):
        out = home.dags_test("first_hour", "2026-03-01T01:00:00+00:00")
    [first] = home.run_ids("first_hour")
    assert home.tasks("first_hour", first) == {
        "build_requests": ("success", 1),
        "submit": ("success", 1),
        "wait": ("success", 1),
        "fetch": ("success", 1),
        "labels_to_csv": ("success", 1),
    }, out[-3000:]
    assert "Pausing task as DEFERRED" in out
    assert "isn't defined" not in out
    folder = home.results / "2026-03-01"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["lines"] == manifest["counts"]["succeeded"] == 6
    assert manifest["run"] == {
        "dag_id": "first_hour",
        "run_id": first,
        "task_id": "fetch",
        "map_index": -1,
    }
    lines = (folder / "results.jsonl").read_bytes().splitlines()
    assert sorted(json.loads(x)["metadata"]["row"] for x in lines) == list(range(6))
    labels = (folder / "labels.csv").read_text().splitlines()
    assert labels[0] == "row_id,label"
    assert sorted(labels[1:]) == [
        "0,SAFE", "1,UNSAFE", "2,SAFE", "3,UNSAFE", "4,SAFE", "5,SAFE"
    ]  # fmt: skip
    before = (folder / "results.jsonl").read_bytes()
    creates = emulator.admin.create_calls()

    # A second run the same day: the same folder ({{ ds }}), the same input, the same job id.
    out = home.dags_test("first_hour", "2026-03-01T02:00:00+00:00")
    second = home.run_ids("first_hour")[-1]
    tasks = home.tasks("first_hour", second)
    assert tasks["submit"] == ("failed", 1), out[-3000:]  # retries=3: none spent on it
    assert tasks["fetch"][0] == "upstream_failed"
    assert emulator.admin.create_calls() == creates  # nothing paid
    assert (
        f"destination file://{folder} holds the results of another run "
        f"(dag_id='first_hour', run_id='{first}', task_id='fetch'; job {manifest['job_id']}"
    ) in out
    assert f"refused for this run (dag_id='first_hour', run_id='{second}'" in out
    assert "{{ run_id }}" in out and "overwrite=True" in out
    assert (folder / "results.jsonl").read_bytes() == before


def test_mistakes_no_retry_can_fix_fail_at_the_first_try(home: Home) -> None:
    creates = home.emulator.admin.create_calls()
    out = home.dags_test("first_hour_mistakes")
    [run_id] = home.run_ids("first_hour_mistakes")
    assert home.tasks("first_hour_mistakes", run_id) == {
        "no_max_tokens": ("failed", 1),
        "wrong_key": ("failed", 1),
        "no_such_batch": ("failed", 1),
        "unreachable": ("failed", 2),  # out of reach: retried (retries=1)
    }, out[-3000:]
    assert home.emulator.admin.create_calls() == creates
    assert (
        "params.max_tokens: is required (give it in the request, or for every request in "
        'defaults={"max_tokens": ...})'
    ) in out
    assert "401 authentication_error" in out
    assert "The API refused the key of connection 'mb_wrong_key'" in out
    assert "404 not_found_error" in out
    assert "No such batch for the key of connection 'message_batches_default'" in out
    assert out.count("Not retried: the same input fails the same way.") >= 3
    assert "Connection refused" in out
    assert home.emulator.api_key not in out

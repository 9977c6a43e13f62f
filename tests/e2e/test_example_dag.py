"""The example DAG users copy, run as they would: `airflow dags test` in its own process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_batches.emulator.testing import RunningEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


def test_nightly_eval_example_runs_with_dags_test(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.configure(latency=0.01, workers=4, result_errors={"overloaded_error": 0.1}, seed=5)
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_BATCHES_RESULTS": f"file://{tmp_path / 'results'}",
            "AIRFLOW_BATCHES_STAGING": f"file://{tmp_path / 'staging'}",
            "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(
                {
                    "conn_type": "message_batches",
                    "host": emulator.base_url,
                    "password": emulator.api_key,
                }
            ),
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [airflow, "dags", "test", "message_batches_nightly_eval"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    manifests = list((tmp_path / "results").glob("*/manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["request_count"] == manifest["lines"] == 100
    assert len(manifest["attempts"]) >= 2  # the overloaded ones were resent
    assert manifest["cost_usd"] > 0
    assert manifest["cache_hit_rate"] > 0.5
    # Every task succeeded at its first try: a hidden retry would hide a bug.
    with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True) as db:
        tries = dict(db.execute("select task_id, try_number from task_instance").fetchall())
    assert tries == {"build_requests": 1, "submit": 1, "wait": 1, "fetch": 1}
    results = manifests[0].with_name("results.jsonl").read_bytes().splitlines()
    assert len({json.loads(line)["custom_id"] for line in results}) == 100

"""The example DAG users copy, run as they would: `airflow dags test` in its own process,
twice: the second night sends nothing and compares itself with the first."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.testing import RunningEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
MODELS = ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"]


def test_nightly_eval_example_runs_twice_with_dags_test(
    emulator_factory: Callable[..., RunningEmulator], tmp_path: Path
) -> None:
    # The responder is chosen at start (the admin view never imports what it is sent).
    emulator = emulator_factory(
        latency=0.005,
        workers=4,
        result_errors={"overloaded_error": 0.1},
        seed=5,
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": {"claude-haiku-5-5": 0.2, "claude-sonnet-5-5": 0.05}},
    )
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_BATCHES_RESULTS": f"file://{tmp_path / 'results'}",
            "AIRFLOW_BATCHES_STAGING": f"file://{tmp_path / 'staging'}",
            "AIRFLOW_BATCHES_CACHE": f"file://{tmp_path / 'cache'}",
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

    def night() -> tuple[dict[str, Any], dict[str, Any]]:
        run = subprocess.run(
            [airflow, "dags", "test", "message_batches_nightly_eval", "--conf", '{"size": 45}'],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        latest = max((tmp_path / "results").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
        summary = json.loads(latest.read_text())
        return json.loads(latest.with_name("manifest.json").read_text()), summary

    manifest, summary = night()
    assert manifest["request_count"] == manifest["lines"] == 135
    assert len(manifest["attempts"]) >= 2  # the overloaded ones were resent
    assert manifest["cost_usd"] > 0
    assert manifest["cache_hit_rate"] > 0.5
    assert list(summary["models"]) == MODELS
    rates = {m: summary["models"][m]["pass_rate"] for m in MODELS}
    assert rates["claude-opus-5-5"] == 1.0 and rates["claude-haiku-5-5"] < 1.0
    assert summary["baseline"] is None
    creates = emulator.admin.create_calls()
    assert creates == len(manifest["batch_ids"]) >= 3  # a batch per model, and follow-ups

    # A request can stay errored after the fetch's 4 attempts (overloaded 4 times in a row:
    # about 1 run in 75 here). Only succeeded results are cached, so the second night sends
    # at most those (fewer when one has the same params as a request that succeeded: the
    # cache answers by params), resends what it gets errored, and sends nothing else.
    left = 135 - manifest["counts"]["succeeded"]
    received = emulator.admin.requests_received()

    manifest2, summary2 = night()
    hits, misses = manifest2["cache"]["hits"], manifest2["cache"]["misses"]
    assert hits + misses == 135 and misses <= left, (manifest["counts"], manifest2["cache"])
    sent = [[b["request_count"] for b in a["batches"]] for a in manifest2["attempts"]]
    assert (sum(sent[0]) if sent else 0) == misses  # its follow-ups may resend some
    assert emulator.admin.requests_received() - received == sum(map(sum, sent))
    assert summary2["baseline"]["run_id"] == summary["run"]["run_id"]
    assert summary2["regressions"]["count"] == 0
    # The cache's answers are the first night's: their scores are taken, not computed again,
    # each from the same request's line of the same answer.
    assert summary2["scorer_fingerprint"] == summary["scorer_fingerprint"] is not None
    reused = sum(m["scores_reused"] for m in summary2["models"].values())
    assert 0 < reused <= hits, (hits, reused)

    def scores(s: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        text = Path(s["files"]["scores"].removeprefix("file://")).read_text()
        return {(x["model"], x["custom_id"]): x for x in map(json.loads, text.splitlines())}

    before, after = scores(summary), scores(summary2)
    taken = [key for key, line in after.items() if line.get("reused")]
    assert len(taken) == reused
    for key in taken:
        for field in ("digest", "score", "passed", "details"):
            assert after[key].get(field) == before[key].get(field), (key, field)
    if not misses:  # the second night sent nothing
        assert emulator.admin.create_calls() == creates
        assert manifest2["cost_usd"] == 0
        deltas = {m: summary2["deltas"][m]["pass_rate"] for m in MODELS}
        assert deltas == dict.fromkeys(MODELS, 0.0)
    assert (Path(summary2["files"]["report"].removeprefix("file://"))).is_file()
    # Every task succeeded at its first try: a hidden retry would hide a bug.
    with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True) as db:
        tries = set(db.execute("select task_id, try_number from task_instance").fetchall())
    assert tries == {(t, 1) for t in ("build_requests", "submit", "wait", "fetch", "evaluate")}

"""docs/migrating.md's converted DAG (``dags_examples/reviews.py``), run as a user runs it:
``airflow dags test`` in its own process against the emulator, with its own Airflow home.

What the page promises a user coming from the official provider, checked on the run: the
wait deferred; a request that ended overloaded was sent again alone (one follow-up batch of
one request, no second batch of everything); every review has exactly one result line, with
its metadata joined; the counting task read them back with ``read_results``; every task
succeeded at its first try. The "before" DAG beside it is never loaded.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.responders import (
    RequestError,
    ResponderContext,
    prompt_usage,
    usage_of,
)
from airflow_batches.emulator.testing import RunningEmulator
from tests.operators.conftest import held_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
GUIDE = ROOT / "docs" / "migrating.md"
DAG_ID = "message_batches_reviews"
# The review the responder answers overloaded the first time it sees it.
OVERLOADED_ONCE = "Shipping took three weeks"
_overloaded: set[str] = set()
_lock = threading.Lock()


def review_responder(ctx: ResponderContext) -> dict[str, Any]:
    """A sentiment by a word in the review; one review overloaded the first time."""
    text = ctx.params["messages"][-1]["content"].lower()
    with _lock:
        first_time = OVERLOADED_ONCE.lower() in text and ctx.custom_id not in _overloaded
        if first_time:
            _overloaded.add(ctx.custom_id)
    if first_time:
        raise RequestError("overloaded_error", "Overloaded")
    if any(word in text for word in ("love", "great", "perfect")):
        label = "POSITIVE"
    elif any(word in text for word in ("broke", "disappointed", "refund")):
        label = "NEGATIVE"
    else:
        label = "NEUTRAL"
    return {
        "id": ctx.message_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.params["model"],
        "content": [{"type": "text", "text": label}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage_of(prompt_usage(ctx), output_tokens=2),
    }


def test_the_guide_shows_the_example_dags_as_they_are() -> None:
    """Each excerpt in docs/migrating.md is its file's lines, in the file's order."""
    blocks = re.findall(r"<!-- excerpt of (\S+) -->\n```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert {path for path, _ in blocks} == {
        "dags_examples/reviews.py",
        "dags_examples/migrating/reviews_official_provider.py",
    }
    for path, block in blocks:
        source = iter(line.strip() for line in (ROOT / path).read_text().splitlines())
        for line in filter(None, (x.strip() for x in block.splitlines())):
            assert line in source, f"{path}: {line!r} is not in the file (or not in this order)"


def test_the_examples_folder_loads_the_converted_dag_and_not_the_official_one() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {DAG_ID, "message_batches_nightly_eval"}
    assert (EXAMPLES / "migrating" / "reviews_official_provider.py").is_file()


@pytest.mark.e2e
@pytest.mark.slow
def test_converted_dag_runs_with_dags_test(
    emulator_factory: Callable[..., RunningEmulator], tmp_path: Path
) -> None:
    _overloaded.clear()
    emulator = emulator_factory(responder=f"{__name__}:review_responder")
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

    polled = emulator.admin.calls("retrieve")
    # Nothing is answered until the wait has polled twice: its poke in the worker, then the
    # trigger's (which `dags test` runs inline): the wait really deferred.
    with held_until(emulator, lambda: emulator.admin.calls("retrieve") >= polled + 2, timeout=60):
        run = subprocess.run(
            [airflow, "dags", "test", DAG_ID],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "Pausing task as DEFERRED" in out

    with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True) as db:
        tries = set(db.execute("select task_id, state, try_number from task_instance"))
        [(counted,)] = db.execute(
            "select value from xcom where task_id = 'count_labels' and key = 'return_value'"
        )
    assert tries == {
        (t, "success", 1) for t in ("build_requests", "submit", "wait", "fetch", "count_labels")
    }
    labels = json.loads(counted)
    assert labels == {"POSITIVE": 4, "NEGATIVE": 2, "NEUTRAL": 2}, labels

    [folder] = (tmp_path / "results" / "reviews").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["request_count"] == manifest["lines"] == manifest["counts"]["succeeded"] == 8
    first, retried = manifest["attempts"]
    assert [b["request_count"] for b in first["batches"]] == [8]
    assert [b["request_count"] for b in retried["batches"]] == [1]  # the overloaded one alone
    assert emulator.admin.create_calls() == 2
    assert emulator.admin.requests_received() == 9
    lines = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"review-{i}" for i in range(8)]
    assert all(line["metadata"] == {"review": int(line["custom_id"][7:])} for line in lines)
    assert emulator.api_key not in out

"""The operators against a lying server (tests/lying.py on 127.0.0.1), in real DAG runs: what
a compromised proxy or a mistaken ``host`` answers can fail a task, never write outside the
staging folder, send the key elsewhere, publish part of a bomb, or block an evaluation.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs.results import OWNER_FILE
from tests.api.test_trust_boundaries import packed_bomb
from tests.evals import lines as L
from tests.jobs.results.test_deep_lines import tool_line
from tests.lying import API_KEY, LyingServer, in_chunks
from tests.operators.conftest import CONN_ID, DagRunner, make_requests

FETCH = """
FetchResultsOperator(task_id="fetch", job=BATCH, destination=RESULTS, poke_interval=0.05,
                     **OPTIONS)
"""


def point_at(runner: DagRunner, server: LyingServer, **extra: Any) -> None:
    """The DAGs' connection names ``server`` instead of the emulator."""
    conn = {
        "conn_type": "message_batches",
        "host": server.base_url,
        "password": API_KEY,
        "extra": {"max_retries": 0, **extra},
    }
    runner.monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def files_under(root: Path, *leave_out: str) -> set[Path]:
    return {
        p
        for p in root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(root / x) for x in leave_out)
    }


def published(runner: DagRunner) -> list[Path]:
    """What a fetch left at its destination besides its claim (owner.json, ``jobs._owner``)."""
    return sorted(p for p in runner.results.rglob("*") if p.is_file() and p.name != OWNER_FILE)


def output(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


@pytest.mark.parametrize("bad_id", ["../../../../../escaped", "{tmp}/absolute", "a/b", "a\nb"])
def test_a_batch_id_with_path_syntax_fails_the_submit_and_writes_nothing_outside_staging(
    dag_runner: DagRunner,
    lying: LyingServer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    bad_id: str,
) -> None:
    bad_id = bad_id.format(tmp=tmp_path)
    lying.created_id = bad_id
    point_at(dag_runner, lying)
    before = files_under(tmp_path, "staging", "emulator")
    result = dag_runner.run(
        'SubmitBatchOperator(task_id="submit", requests=REQS)', REQS=make_requests(3)
    )
    assert result.states["submit"] == "failed", result.states
    assert f"batch id {bad_id!r} is not an identifier of the API's shape" in output(capfd)
    assert [s.method for s in lying.seen] == ["POST"]  # one create; nothing else asked of it
    assert files_under(tmp_path, "staging", "emulator") == before
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "absolute.json").exists()
    registry = dag_runner.staging / "_registry"
    assert not [p for p in registry.rglob("*") if "claims" in p.parts]  # no claim, anywhere


def test_a_results_url_on_another_origin_fails_the_fetch_and_the_key_never_goes_there(
    dag_runner: DagRunner,
    lying: LyingServer,
    foreign: LyingServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    lines = [json.dumps(L.succeeded(c, "yes")).encode() for c in ("a", "b")]
    foreign.serve("msgbatch_x", lines, 2)
    elsewhere = f"{foreign.base_url}/v1/messages/batches/msgbatch_x/results"
    lying.serve("msgbatch_x", lines, 2, results_url=elsewhere)
    point_at(dag_runner, lying)

    result = dag_runner.run(FETCH, BATCH="msgbatch_x", OPTIONS={})
    assert result.states["fetch"] == "failed", result.states
    assert foreign.seen == []  # not one request: the key was never sent there
    assert (
        f"batch msgbatch_x: its results_url is on http://127.0.0.1:{foreign.port}, not on the "
        f"API's origin http://127.0.0.1:{lying.port}" in output(capfd)
    )
    assert published(dag_runner) == []

    # A gateway the user names is followed, with the key.
    point_at(dag_runner, lying, results_origins=[foreign.base_url])
    result = dag_runner.run(FETCH, BATCH="msgbatch_x", OPTIONS={})
    assert result.states["fetch"] == "success", result.states
    assert [(s.path, s.api_key) for s in foreign.seen] == [
        ("/v1/messages/batches/msgbatch_x/results", API_KEY)
    ]
    assert (dag_runner.results / "results.jsonl").read_bytes().splitlines() == lines


@pytest.mark.parametrize("kind", ["gzip", "deflate", "endless"])
def test_a_bomb_or_an_endless_body_fails_the_fetch_naming_the_batch_and_publishes_nothing(
    dag_runner: DagRunner, lying: LyingServer, capfd: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "endless":
        line = b'{"custom_id":"a","result":{"type":"canceled"}}\n'
        lying.serve("msgbatch_b", b"", 5).chunks = lambda: itertools.repeat(line * 3)
        expected = "results of batch msgbatch_b: line 16 is past the 15 lines its 5 request(s)"
    else:
        served = lying.serve("msgbatch_b", b"", 2, encoding=kind)
        served.chunks = in_chunks(packed_bomb(kind), 64 << 10)
        expected = (
            "results of batch msgbatch_b: line 2 is longer than max_line_bytes (4,194,304 bytes)"
        )
    point_at(dag_runner, lying)
    result = dag_runner.run(FETCH, BATCH="msgbatch_b", OPTIONS={"max_line_bytes": 4 << 20})
    assert result.states["fetch"] == "failed", result.states
    assert expected in output(capfd)
    assert lying.batches["msgbatch_b"].downloads == 1  # stopped, not read again
    assert published(dag_runner) == []


def test_a_deeply_nested_line_is_published_verbatim_and_evaluated(
    dag_runner: DagRunner, lying: LyingServer
) -> None:
    flat = json.dumps(L.succeeded("flat", '{"a": 1}')).encode()
    deep = tool_line("deep")
    brackets = json.dumps(L.succeeded("brackets", "[" * 50_000 + "]" * 50_000)).encode()
    lying.serve("msgbatch_d", [flat, deep, brackets], 3)
    point_at(dag_runner, lying)
    result = dag_runner.run(
        """
        from airflow_batches.evals import json_schema
        fetch = FetchResultsOperator(task_id="fetch", job=BATCH, destination=RESULTS,
                                     poke_interval=0.05)
        evaluate = EvaluateResultsOperator(task_id="evaluate", results=fetch.output,
            scorer=json_schema({"type": "object", "required": ["a"]}))
        fetch >> evaluate
        """,
        BATCH="msgbatch_d",
    )
    assert result.states == {"fetch": "success", "evaluate": "success"}, result.states
    assert (dag_runner.results / "results.jsonl").read_bytes() == flat + b"\n" + deep + b"\n" + (
        brackets + b"\n"
    )
    manifest = result.xcom("fetch")
    assert manifest["counts"]["succeeded"] == 3
    assert manifest["usage_by_model"]["claude-haiku-4-5"]["output_tokens"] == 10 + 7 + 10
    model = result.xcom("evaluate")["models"]["claude-haiku-4-5"]
    assert (model["scored"], model["passed"], model["unscored"]) == (2, 1, 1)
    scores = {
        x["custom_id"]: x
        for x in map(json.loads, (dag_runner.results / "scores.jsonl").read_bytes().splitlines())
    }
    assert "nests arrays or objects deeper" in scores["deep"]["details"]["unscorable"]
    assert scores["brackets"]["score"] == 0.0
    assert "nests deeper" in scores["brackets"]["details"]["error"]

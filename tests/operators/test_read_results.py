"""Reading a fetch's output back as rows (``airflow_batches.read_results``), in a task of the
DAG's own, as docs/operators.md's recipe does: from files (split or not), from XCom, and for
a model matrix."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.responders import ResponderContext, prompt_usage, usage_of
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.results import rows_from_files
from tests.operators.conftest import DagRunner

COMMENTS = ["Lovely photo!", "I hate you all.", "Where was this taken?", "Go away, hate."]


def moderation_responder(ctx: ResponderContext) -> dict[str, Any]:
    """SAFE / UNSAFE by a word in the comment: the responder docs/emulator.md shows."""
    text = ctx.params["messages"][-1]["content"]
    label = "UNSAFE" if "hate" in text.lower() else "SAFE"
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


def requests() -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = [
        {
            "custom_id": f"row-{i}",
            "params": {"messages": [{"role": "user", "content": text}]},
            "metadata": {"row": i},
        }
        for i, text in enumerate(COMMENTS)
    ]
    reqs[3]["params"]["model"] = "claude-no-such-model"  # ends errored: not_found_error
    return reqs


ROWS = """
submit = SubmitBatchOperator(task_id="submit", requests=REQS,
    defaults={"model": "claude-haiku-4-5", "max_tokens": 8}, {submit})
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, {fetch})

@task
def to_rows(output):
    return [
        [row.custom_id, row.type, row.text, row.metadata, row.model, row.error]
        for row in read_results(output)
    ]

submit >> wait >> fetch >> to_rows(fetch.output)
"""


def rows_dag(submit: str = "", fetch: str = "destination=RESULTS") -> str:
    return ROWS.replace("{submit}", submit).replace("{fetch}", fetch)


@pytest.fixture
def moderation(
    airflow_db: None,
    emulator_factory: Callable[..., RunningEmulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> DagRunner:
    # The responder is chosen at start (the admin view never imports what it is sent).
    emulator = emulator_factory(responder=f"{__name__}:moderation_responder")
    return DagRunner(emulator, tmp_path, monkeypatch)


def test_rows_from_the_published_files_and_from_xcom(moderation: DagRunner) -> None:
    dag_runner = moderation
    expected = [
        ["row-0", "succeeded", "SAFE", {"row": 0}, None, None],
        ["row-1", "succeeded", "UNSAFE", {"row": 1}, None, None],
        ["row-2", "succeeded", "SAFE", {"row": 2}, None, None],
        [
            "row-3",
            "errored",
            None,
            {"row": 3},
            None,
            "not_found_error: model: claude-no-such-model",
        ],
    ]
    for fetch in (
        "destination=RESULTS",
        "destination=RESULTS + '/split', split_by_type=True",
        "poke_interval=0.05",  # no destination: the results come back in XCom
    ):
        result = dag_runner.run(rows_dag(fetch=fetch), REQS=requests())
        assert result.state == "success", (fetch, result.states)
        assert sorted(result.xcom("to_rows")) == expected, fetch


def test_a_matrix_jobs_rows_carry_the_model_label_and_the_requests_own_id(
    moderation: DagRunner,
) -> None:
    dag_runner = moderation
    reqs = requests()[:2]
    result = dag_runner.run(
        rows_dag(
            submit='models=["claude-haiku-4-5", {"model": "claude-sonnet-4-5", "label": "big"}]'
        ),
        REQS=reqs,
    )
    assert result.state == "success", result.states
    rows = sorted(result.xcom("to_rows"), key=lambda r: (r[4], r[0]))
    assert [(r[0], r[4], r[2], r[3]) for r in rows] == [
        ("row-0", "big", "SAFE", {"row": 0}),
        ("row-1", "big", "UNSAFE", {"row": 1}),
        ("row-0", "claude-haiku-4-5", "SAFE", {"row": 0}),
        ("row-1", "claude-haiku-4-5", "UNSAFE", {"row": 1}),
    ]


class _Counted:
    """A path whose stream counts the bytes of the lines handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read = 0

    @contextmanager
    def open(self, mode: str) -> Iterator[Iterator[bytes]]:
        with self.path.open(mode) as stream:

            def lines() -> Iterator[bytes]:
                for line in stream:
                    self.read += len(line)
                    yield line

            yield lines()


def test_rows_are_read_one_line_at_a_time(tmp_path: Path) -> None:
    line = {
        "custom_id": "x",
        "result": {"type": "succeeded", "message": {"content": [{"type": "text", "text": "ok"}]}},
    }
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps({**line, "custom_id": f"r{i}"}) + "\n" for i in range(5000)))
    counted = _Counted(path)
    rows = rows_from_files([counted])  # type: ignore[list-item]
    first = next(rows)
    assert (first.custom_id, first.text, first.ok) == ("r0", "ok", True)
    assert counted.read < 1000 < path.stat().st_size
    assert sum(1 for _ in rows) == 4999

"""Real clients no one here wrote, unchanged, against the emulator in batch mode.

Inspect AI (an eval framework) and the official SDK at its newest run from their own
virtualenv, ``.clients-venv`` (``scripts/client_venv.py``: built from PyPI on first use, reused
after), never from the project's environment. Each runs a few questions of the emulator's
task set on the three current models; the eval responder answers them right, so every sample
must come back scored correct: an answer matched to the wrong sample would fail it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic
import pytest

from airflow_batches.emulator import EmulatorConfig
from airflow_batches.emulator.betas import known_betas
from airflow_batches.emulator.evalset import eval_requests
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from scripts.client_venv import clients_python

pytestmark = pytest.mark.slow

MODELS = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")
QUESTIONS = 6
"""Two of each category (arithmetic, lookup, extraction) per model."""
CLIENTS = Path(__file__).parent / "clients"
EVAL_CONFIG = EmulatorConfig(responder="airflow_batches.emulator.evalset:eval_responder")


@pytest.fixture(scope="module")
def python() -> Path:
    return clients_python()


def _questions(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    questions = []
    for item in eval_requests(QUESTIONS, seed=27):
        expected = item["metadata"]["expected"]
        target = expected if isinstance(expected, str) else json.dumps(expected)
        question = item["params"]["messages"][0]["content"]
        questions.append({"id": item["custom_id"], "question": question, "target": target})
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(questions))
    return path, {q["id"]: q["target"] for q in questions}


def _run_client(
    python: Path, script: str, emulator: RunningEmulator, tmp_path: Path, questions: Path
) -> dict[str, Any]:
    """Run a client script in the clients' venv, talking to ``emulator`` only."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "INSPECT_", "PYTHON", "XDG_"))
    }
    env.update(
        ANTHROPIC_BASE_URL=emulator.base_url,
        ANTHROPIC_API_KEY=emulator.api_key,
        # Whatever the client keeps between runs goes to this test's folder.
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    out = tmp_path / "out.json"
    done = subprocess.run(
        [str(python), str(CLIENTS / script), str(questions), str(out), *MODELS],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _thinking_tokens_by_model(emulator: RunningEmulator) -> Counter[str]:
    """What the emulator's result lines report as thinking, summed per model (read with the
    pinned SDK, so its types check the field too)."""
    totals: Counter[str] = Counter()
    with anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url) as sdk:
        for batch in sdk.messages.batches.list(limit=100):
            for line in sdk.messages.batches.results(batch.id):
                assert line.result.type == "succeeded"
                message = line.result.message
                details = message.usage.output_tokens_details
                assert details is not None
                assert [b.type for b in message.content] == ["thinking", "text"]
                totals[message.model] += details.thinking_tokens
    return totals


def test_inspect_ai_runs_unchanged_in_batch_mode(python: Path, tmp_path: Path) -> None:
    """Inspect AI 0.3.285 (anthropic 2.17.0) in its batch mode sends
    ``thinking-binding-controls-2026-08-01`` and a bound adaptive thinking config for these
    models; every sample must be answered and matched, and its reasoning-token count must
    come from ``usage.output_tokens_details`` (without it Inspect calls count_tokens once
    per thinking block)."""
    questions, targets = _questions(tmp_path)
    with serve_emulator(EVAL_CONFIG, data_dir=tmp_path / "emulator") as emulator:
        runs = _run_client(python, "inspect_batch.py", emulator, tmp_path, questions)
        thinking = _thinking_tokens_by_model(emulator)
        stats = emulator.admin.stats()
    assert sorted(runs) == sorted(MODELS)
    for model, run in runs.items():
        assert run["status"] == "success", (model, run["error"])
        assert run["samples"] == {
            sample_id: {"answer": target, "score": "C"} for sample_id, target in targets.items()
        }, model
        assert run["reasoning_tokens"] == thinking[model] > 0, model
        assert run["reasoning_tokens"] < run["output_tokens"]
    # One batch per model, nothing sent outside batches.
    assert stats["workspaces"]["default"]["batches_created"] == len(MODELS)
    assert stats["count_tokens_calls"] == 0


def test_the_newest_sdk_runs_in_batch_mode_with_every_beta_it_names(
    python: Path, tmp_path: Path
) -> None:
    """anthropic 2.17.0, the newest release checked, through ``client.beta.messages.batches``
    with ``betas=`` its whole list: a newer SDK naming a beta the table lacks fails here."""
    questions, targets = _questions(tmp_path)
    with serve_emulator(EVAL_CONFIG, data_dir=tmp_path / "emulator") as emulator:
        run = _run_client(python, "sdk_batch.py", emulator, tmp_path, questions)
    assert run["sdk"] == "2.17.0"
    assert set(run["betas"]) <= set(known_betas())
    assert sorted(run["models"]) == sorted(MODELS)
    for model, batch in run["models"].items():
        assert batch["counts"]["succeeded"] == QUESTIONS, (model, batch["counts"])
        assert {cid: line["answer"] for cid, line in batch["lines"].items()} == targets
        for line in batch["lines"].values():
            assert line["blocks"] == ["thinking", "text"]
            usage = line["usage"]
            assert 0 < usage["output_tokens_details"]["thinking_tokens"] < usage["output_tokens"]

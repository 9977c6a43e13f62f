"""Inspect AI, unchanged, in batch mode: one eval of the given questions on each model.

Run by the clients' virtualenv python as ``inspect_batch.py QUESTIONS OUT MODEL...``, with
``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` set. QUESTIONS is a JSON list of ``{id,
question, target}``; OUT gets, per model, the log's status and error, every sample's answer
and score, and the reasoning tokens Inspect counted.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.model import BatchConfig
from inspect_ai.scorer import exact
from inspect_ai.solver import generate


def main(questions_path: str, out_path: str, *models: str) -> None:
    questions = json.loads(Path(questions_path).read_text())
    task = Task(
        dataset=[Sample(id=q["id"], input=q["question"], target=q["target"]) for q in questions],
        solver=generate(),
        scorer=exact(),
    )
    with tempfile.TemporaryDirectory() as log_dir:
        logs = eval(
            task,
            model=[f"anthropic/{m}" for m in models],
            # Every sample in one batch per model, polled often: the emulator answers at once.
            batch=BatchConfig(size=len(questions), send_delay=0.5, tick=0.5),
            log_dir=log_dir,
            display="none",
            max_tokens=512,
            max_retries=0,
            fail_on_error=True,
        )
        # Samples are read lazily from the log files: before the folder goes.
        out = {}
        for log in logs:
            samples = log.samples or []
            usage = log.stats.model_usage if log.stats else {}
            out[log.eval.model.removeprefix("anthropic/")] = {
                "status": log.status,
                "error": log.error.message if log.error else None,
                "samples": {
                    str(s.id): {
                        "answer": s.output.completion,
                        "score": next(iter(s.scores.values())).value if s.scores else None,
                    }
                    for s in samples
                },
                "reasoning_tokens": sum(u.reasoning_tokens or 0 for u in usage.values()),
                "output_tokens": sum(u.output_tokens for u in usage.values()),
            }
    Path(out_path).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])

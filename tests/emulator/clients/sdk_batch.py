"""The official SDK at its newest, unchanged, in batch mode, with every beta it names.

Run by the clients' virtualenv python as ``sdk_batch.py QUESTIONS OUT MODEL...``, with
``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` set. For each model it creates one batch of
the questions through ``client.beta.messages.batches`` with ``betas=`` every value of its own
``AnthropicBetaParam``, thinking on and bound (``block_binding``), polls it to the end and
reads the results. Every raw batch and result line is validated strictly with this SDK's
types. OUT gets the SDK's version and beta list and, per model, the counts, each answer and
the usage of each line.
"""

from __future__ import annotations

import json
import sys
import time
import typing
from pathlib import Path

import anthropic
from anthropic.types.anthropic_beta_param import AnthropicBetaParam
from anthropic.types.beta.messages import (
    BetaMessageBatch,
    BetaMessageBatchIndividualResponse,
)

POLL_SECONDS = 0.2
"""The emulator answers within a second or two; a real client would poll far less often."""
DEADLINE_SECONDS = 120


def sdk_betas() -> list[str]:
    (names,) = [typing.get_args(a) for a in typing.get_args(AnthropicBetaParam) if a is not str]
    return list(names)


def main(questions_path: str, out_path: str, *models: str) -> None:
    questions = json.loads(Path(questions_path).read_text())
    betas = sdk_betas()
    out: dict[str, typing.Any] = {"sdk": anthropic.__version__, "betas": betas, "models": {}}
    with anthropic.Anthropic(max_retries=0) as client:
        batches = client.beta.messages.batches
        for model in models:
            requests = [
                {
                    "custom_id": q["id"],
                    "params": {
                        "model": model,
                        "max_tokens": 512,
                        "messages": [{"role": "user", "content": q["question"]}],
                        "thinking": {
                            "type": "adaptive",
                            "block_binding": {"prefix_mismatch_behavior": "drop_block"},
                        },
                    },
                }
                for q in questions
            ]
            raw = batches.with_raw_response.create(requests=requests, betas=betas)
            batch = BetaMessageBatch.model_validate_json(raw.http_response.content, strict=True)
            deadline = time.monotonic() + DEADLINE_SECONDS
            while batch.processing_status != "ended":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch.id} of {model} has not ended")
                time.sleep(POLL_SECONDS)
                raw = batches.with_raw_response.retrieve(batch.id, betas=betas)
                batch = BetaMessageBatch.model_validate_json(raw.http_response.content, strict=True)
            lines = {}
            for line in batches.results(batch.id, betas=betas):
                # The SDK builds its objects unvalidated: check what came over the wire.
                strict = BetaMessageBatchIndividualResponse.model_validate(
                    line.model_dump(mode="json", exclude_unset=True), strict=True
                )
                result = strict.result
                if result.type != "succeeded":
                    lines[strict.custom_id] = {"type": result.type}
                    continue
                message = result.message
                lines[strict.custom_id] = {
                    "type": "succeeded",
                    "blocks": [block.type for block in message.content],
                    "answer": "".join(b.text for b in message.content if b.type == "text"),
                    "usage": message.usage.model_dump(mode="json", exclude_none=True),
                }
            out["models"][model] = {
                "counts": batch.request_counts.model_dump(),
                "lines": lines,
            }
    Path(out_path).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Inputs the benchmark scripts share."""

from __future__ import annotations

import json
from pathlib import Path


def write_requests(path: Path, count: int, prompt_bytes: int) -> int:
    """A JSONL file of ``count`` requests as a pipeline writes them (``json.dumps``).

    Each line holds the model, max_tokens and one user message of about ``prompt_bytes``
    characters; 100,000 requests at 1,769 make the 191 MB of issue 15's P1. Returns its size.
    """
    filler = "x" * prompt_bytes
    with path.open("w") as out:
        for i in range(count):
            request = {
                "custom_id": f"req-{i:07d}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"{i} {filler}"}],
                },
            }
            out.write(json.dumps(request) + "\n")
    return path.stat().st_size

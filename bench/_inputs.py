"""Inputs the benchmark scripts share."""

from __future__ import annotations

import json
from pathlib import Path

API_KEY = "sink-key"
"""The key every contender sends to the sink."""


def count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


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


def write_results(path: Path, count: int, text_bytes: int) -> int:
    """A results JSONL file of ``count`` succeeded lines as the API writes them.

    Each line carries a message of about ``text_bytes`` characters with its usage (cache reads
    included); 100,000 lines at 2,900 make the ~321 MB of issue 15's P2. Returns its size.
    """
    filler = "lorem ipsum dolor sit amet " * (text_bytes // 27 + 1)
    with path.open("w") as out:
        for i in range(count):
            line = {
                "custom_id": f"req-{i:07d}",
                "result": {
                    "type": "succeeded",
                    "message": {
                        "id": f"msg_{i:024d}",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": filler[:text_bytes]}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 1200,
                            "output_tokens": 800,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 1000,
                            "service_tier": "batch",
                        },
                    },
                },
            }
            out.write(json.dumps(line) + "\n")
    return path.stat().st_size

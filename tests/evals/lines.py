"""Published result lines as the fetch writes them, for scoring tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def succeeded(
    custom_id: str,
    text: str,
    *,
    model: str = "claude-haiku-4-5",
    label: str | None = None,
    metadata: Any = None,
    input_tokens: int = 100,
    output_tokens: int = 10,
    cached: bool = False,
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": f"m0_{custom_id}" if label else custom_id,
        "result": {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
        },
    }
    return _extras(line, custom_id, label, metadata, cached)


def errored(
    custom_id: str,
    error_type: str = "overloaded_error",
    *,
    label: str | None = None,
    metadata: Any = None,
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": f"m0_{custom_id}" if label else custom_id,
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": error_type, "message": "x"}},
        },
    }
    return _extras(line, custom_id, label, metadata, False)


def other(
    custom_id: str, kind: str, *, label: str | None = None, metadata: Any = None
) -> dict[str, Any]:
    line = {"custom_id": f"m0_{custom_id}" if label else custom_id, "result": {"type": kind}}
    return _extras(line, custom_id, label, metadata, False)


def _extras(
    line: dict[str, Any], custom_id: str, label: str | None, metadata: Any, cached: bool
) -> dict[str, Any]:
    if metadata is not None:
        line["metadata"] = metadata
    if label is not None:
        line["matrix"] = {"model": label, "custom_id": custom_id}
    if cached:
        line["cached_from"] = {"batch_id": "msgbatch_old", "custom_id": line["custom_id"]}
    return line


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path

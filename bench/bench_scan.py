"""Throughput of the result-line scanner behind FetchResultsOperator's manifest.

Writes a JSONL file of realistic batch result lines (mostly succeeded messages of a few KB,
some errored / canceled / expired lines, a handful of multi-MB lines as the 300k-output beta
produces), then times three passes over it, each reading the file line by line:

* ``json.loads`` of every line (the naive baseline: builds the whole object tree),
* a pydantic model of the same few fields the scanner reads (the alternative that lost:
  decoding only, no record built, so the comparison flatters it),
* ``scan_result_line`` alone (msgspec structs of those fields, plus the record),
* ``scan_result_line`` + ``ResultTally.add`` (what the operator does per line).

Usage: ``.venv/bin/python bench/bench_scan.py [--mb 300] [--repeat 3] [--keep PATH]``.
Each figure is the best of ``--repeat`` runs, so the page cache is warm for all three.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from airflow_batches.jobs.results import ResultTally, scan_result_line

_MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5-20251101",
    "claude-3-5-haiku-20241022",
)
_ERRORS = ("invalid_request_error", "overloaded_error", "api_error", "not_found_error")
_WORDS = [
    "".join(random.Random(i).choices(string.ascii_lowercase, k=1 + i % 9)) for i in range(500)
]


def _text(rng: random.Random, n_chars: int) -> str:
    # Real answers are prose with newlines, quotes and some non-ASCII: all of them make the
    # parser take its slower escape-handling path, so a plain ASCII filler would flatter it.
    parts: list[str] = []
    size = 0
    while size < n_chars:
        word = rng.choice(_WORDS)
        roll = rng.random()
        if roll < 0.02:
            word += "\n\n"
        elif roll < 0.03:
            word = f'"{word}"'
        elif roll < 0.035:
            word += " — é ü 日本"
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)


def _usage(rng: random.Random) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": rng.randint(50, 5000),
        "output_tokens": rng.randint(10, 4000),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "batch",
    }
    roll = rng.random()
    if roll < 0.3:
        c5m, c1h = rng.randint(0, 3000), rng.randint(0, 1000)
        usage["cache_creation_input_tokens"] = c5m + c1h
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": c5m,
            "ephemeral_1h_input_tokens": c1h,
        }
    elif roll < 0.6:
        usage["cache_read_input_tokens"] = rng.randint(1000, 20000)
    if rng.random() < 0.05:
        usage["server_tool_use"] = {
            "web_search_requests": rng.randint(1, 5),
            "web_fetch_requests": 0,
        }
    if rng.random() < 0.1:
        usage["inference_geo"] = "us"
    return usage


def _succeeded(rng: random.Random, text_chars: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if rng.random() < 0.2:
        content.append(
            {"type": "thinking", "thinking": _text(rng, text_chars // 2), "signature": "E" * 300}
        )
    content.append({"type": "text", "text": _text(rng, text_chars)})
    if rng.random() < 0.1:
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_01" + "A" * 22,
                "name": "record_answer",
                "input": {"label": rng.choice(_WORDS), "score": rng.random(), "tags": _WORDS[:5]},
            }
        )
    return {
        "type": "succeeded",
        "message": {
            "id": "msg_01" + "".join(rng.choices(string.ascii_letters, k=22)),
            "type": "message",
            "role": "assistant",
            "model": rng.choice(_MODELS),
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": _usage(rng),
        },
    }


def _result(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.90:
        return _succeeded(rng, int(rng.lognormvariate(7.4, 0.9)))  # median ~1.6 KB of text
    if roll < 0.96:
        error_type = rng.choice(_ERRORS)
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": f"{error_type}: something went wrong"},
                "request_id": "req_01" + "B" * 22,
            },
        }
    return {"type": "canceled"} if roll < 0.98 else {"type": "expired"}


def generate(path: Path, megabytes: float, seed: int = 7) -> int:
    """Write about ``megabytes`` MB of result lines to ``path``; return the number of lines."""
    rng = random.Random(seed)
    # Distinct bodies, repeated under fresh custom_ids: generating every line would take
    # longer than the passes being measured.
    templates = [json.dumps(_result(rng), ensure_ascii=False).encode() for _ in range(2000)]
    # The 300k-output beta: a few lines of several MB each, spread through the file.
    huge = [json.dumps(_succeeded(rng, n * 1_000_000)).encode() for n in (2, 4, 6)]
    target = int(megabytes * 1_000_000)
    huge_every = max(target // 4, 1)
    written = lines = 0
    next_huge = huge_every
    with path.open("wb") as out:
        while written < target:
            if written >= next_huge and huge:
                body = huge.pop()
                next_huge += huge_every
            else:
                body = templates[lines % len(templates)]
            line = b'{"custom_id":"req-%08d","result":%s}\n' % (lines, body)
            out.write(line)
            written += len(line)
            lines += 1
    return lines


class _PydCacheCreation(BaseModel):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _PydServerToolUse(BaseModel):
    web_search_requests: int | None = None
    web_fetch_requests: int | None = None


class _PydUsage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _PydCacheCreation | None = None
    server_tool_use: _PydServerToolUse | None = None
    inference_geo: str | None = None
    service_tier: str | None = None


class _PydMessage(BaseModel):
    model: str | None = None
    usage: _PydUsage | None = None


class _PydErrorDetail(BaseModel):
    type: str | None = None


class _PydErrorEnvelope(BaseModel):
    type: str | None = None
    error: _PydErrorDetail | None = None


class _PydResult(BaseModel):
    type: str
    message: _PydMessage | None = None
    error: _PydErrorEnvelope | None = None


class _PydLine(BaseModel):
    custom_id: str
    result: _PydResult


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            yield line.rstrip(b"\n")


def _pass_json(path: Path) -> None:
    loads = json.loads
    for line in _lines(path):
        loads(line)


def _pass_pydantic(path: Path) -> None:
    validate = _PydLine.model_validate_json
    for line in _lines(path):
        validate(line)


def _pass_scan(path: Path) -> None:
    scan = scan_result_line
    for number, line in enumerate(_lines(path), 1):
        scan(line, line_number=number)


def _pass_tally(path: Path) -> ResultTally:
    scan = scan_result_line
    tally = ResultTally()
    add = tally.add
    for number, line in enumerate(_lines(path), 1):
        add(scan(line, line_number=number))
    return tally


def _best(fn: Callable[[Path], object], path: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(path)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=300.0, help="size of the JSONL file (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per pass; best is shown")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    args = parser.parse_args(argv)

    fd, tmp = tempfile.mkstemp(suffix=".jsonl", prefix="bench-scan-")
    os.close(fd)
    path = args.keep or Path(tmp)
    try:
        start = time.perf_counter()
        lines = generate(path, args.mb)
        size_mb = path.stat().st_size / 1_000_000
        print(
            f"generated {lines:,} lines, {size_mb:,.1f} MB in {time.perf_counter() - start:.1f} s"
        )
        print(f"{'pass':<24} {'seconds':>8} {'MB/s':>8} {'lines/s':>11}")
        for name, fn in (
            ("json.loads", _pass_json),
            ("pydantic (same fields)", _pass_pydantic),
            ("scan_result_line", _pass_scan),
            ("scan + ResultTally", _pass_tally),
        ):
            seconds = _best(fn, path, args.repeat)
            print(f"{name:<24} {seconds:8.2f} {size_mb / seconds:8.0f} {lines / seconds:11,.0f}")
        summary = _pass_tally(path).to_dict()
        print(json.dumps({k: summary[k] for k in ("lines", "counts", "cost_usd")}))
    finally:
        if args.keep is None:
            Path(tmp).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

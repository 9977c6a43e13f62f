"""How close the pre-flight cost estimate lands to what the emulator bills.

    .venv/bin/python bench/estimate_accuracy.py
    .venv/bin/python bench/estimate_accuracy.py --scale 0.25   # a quicker run

Three workloads, each against its own emulator (a real HTTP server on loopback):

- ``short``: short prompts on four models, small answers (the default responder);
- ``cached``: a long system prompt marked ``cache_control`` shared by every request (5-minute
  and 1-hour lifetimes), on four models, Haiku 5.5 with one long enough (over 100,000 tokens)
  to pay its higher prompt-size tier;
- ``long``: short prompts with long answers (a responder writing 55-95% of ``max_tokens``,
  standing for a model asked for long documents).

The estimate cannot know how long the answers will be. As a user would, each workload first
sends a pilot batch (10% of its requests) and takes, per model, the share of ``max_tokens``
its answers used (output tokens of the pilot's tally over the pilot's max_tokens); the pilot's
cache entries then expire (the emulated clock moves two hours). The estimate of the other 90%
is made by the same validator pass the operator runs (model rules and the ``CostEstimator``
observer); then those requests are sent and their results tallied at batch prices. Printed
per workload: billed, expected (error), worst case, and the expected figure with the default
output assumption (half of ``max_tokens``) for comparison. The target: the calibrated
expected figure within 15% of the billed cost, and the worst case at or above it.

What this does not show: the real API's batch cache is best-effort (hit rates of 30-98%),
while the emulator's hits every prefix it holds, as the estimate assumes; a real bill with
many misses lands between the expected figure and the worst case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_batches.api import Client
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.responders import ResponderContext, default_responder
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from airflow_batches.jobs.cost import CostEstimator, Estimate, output_tokens_from_manifest
from airflow_batches.jobs.prepare import (
    RequestValidator,
    model_rules_check,
    prepare,
    records_from_items,
)
from airflow_batches.jobs.results import ResultTally, scan_result_line

VERSION = "2023-06-01"
WORDS = [
    "ledger",
    "batch",
    "cache",
    "prompt",
    "model",
    "answer",
    "token",
    "window",
    "shard",
    "queue",
    "result",
    "stream",
    "review",
    "summary",
    "report",
    "account",
    "invoice",
    "policy",
    "record",
    "schema",
    "market",
    "signal",
    "figure",
    "detail",
    "clause",
    "contract",
    "section",
    "chapter",
    "paragraph",
    "outline",
    "argument",
    "evidence",
]
TARGET = 0.15


def long_answers(ctx: ResponderContext) -> dict[str, Any]:
    """The default message, its answer 55-95% of max_tokens long (one token a word)."""
    message = default_responder(ctx)
    max_tokens = int(ctx.params["max_tokens"])
    digest = hashlib.blake2b(ctx.custom_id.encode(), digest_size=4).digest()
    share = 0.55 + 0.40 * int.from_bytes(digest, "big") / 2**32
    n = max(1, int(max_tokens * share))
    message["content"] = [
        {"type": "text", "text": " ".join(WORDS[i % len(WORDS)] for i in range(n))}
    ]
    message["usage"]["output_tokens"] = n
    message["stop_reason"] = "end_turn"
    return message


def text(rng: random.Random, n_bytes: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_bytes:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def item(custom_id: str, **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": params}


def short_workload(n: int, rng: random.Random) -> list[dict[str, Any]]:
    models = ["claude-sonnet-5-5", "claude-haiku-5-5", "claude-haiku-4-5", "claude-opus-5-5"]
    return [
        item(
            f"short-{i}",
            model=models[i % len(models)],
            max_tokens=256,
            messages=[{"role": "user", "content": text(rng, rng.randint(60, 600))}],
        )
        for i in range(n)
    ]


def cached_workload(n: int, rng: random.Random) -> list[dict[str, Any]]:
    plans = [  # model, system prompt bytes, cache lifetime
        ("claude-opus-5-5", 40_000, "1h"),
        ("claude-fable-5-1", 40_000, "1h"),
        ("claude-sonnet-5-5", 40_000, "5m"),
        ("claude-haiku-5-5", 400_000, "5m"),  # ~130,000 tokens: the > 100,000 tier
    ]
    systems = {m: text(random.Random(m), size) for m, size, _ in plans}
    out = []
    for i in range(n):
        model, _, ttl = plans[i % len(plans)]
        system = [
            {
                "type": "text",
                "text": systems[model],
                "cache_control": {"type": "ephemeral", "ttl": ttl},
            }
        ]
        question = text(rng, rng.randint(80, 400))
        out.append(
            item(
                f"cached-{i}",
                model=model,
                max_tokens=512,
                system=system,
                messages=[{"role": "user", "content": question}],
            )
        )
    return out


def long_workload(n: int, rng: random.Random) -> list[dict[str, Any]]:
    models = ["claude-sonnet-5", "claude-opus-5", "claude-fable-5", "claude-haiku-4-5"]
    return [
        item(
            f"long-{i}",
            model=models[i % len(models)],
            max_tokens=rng.randint(2_000, 8_000),
            messages=[{"role": "user", "content": "Write the report: " + text(rng, 300)}],
        )
        for i in range(n)
    ]


def run_batch(
    client: Client, emulator: RunningEmulator, items: list[dict[str, Any]]
) -> ResultTally:
    batch = client.create(items)
    emulator.wait_ended(batch.id, timeout=1800)
    tally = ResultTally()
    with client.stream_results(batch.id) as stream:
        for line in stream.iter_lines():
            tally.add(scan_result_line(line))
    return tally


def output_share(items: list[dict[str, Any]], tally: ResultTally) -> dict[str, float]:
    """Per model: output tokens of the pilot over the max_tokens it allowed."""
    allowed: dict[str, int] = {}
    for it in items:
        model = it["params"]["model"]
        allowed[model] = allowed.get(model, 0) + it["params"]["max_tokens"]
    used = tally.usage_by_model
    return {m: min(1.0, used[m].output_tokens / allowed[m]) for m in allowed if m in used}


def estimate(items: list[dict[str, Any]], share: dict[str, float] | None) -> tuple[Estimate, float]:
    estimator = CostEstimator(output_fraction=share or 0.5)
    validator = RequestValidator(
        anthropic_version=VERSION,
        checks=[model_rules_check(anthropic_version=VERSION)],
        observers=[estimator],
    )
    t0 = time.perf_counter()
    with Path(os.devnull).open("wb") as sink:
        prepare(records_from_items(items), validator, sink)
    return estimator.estimate(), time.perf_counter() - t0


Workload = Callable[[int, random.Random], list[dict[str, Any]]]


def measure(name: str, build: Workload, n: int, responder: str | None) -> dict[str, Any]:
    items = build(n, random.Random(name))
    pilot_n = max(20, n // 10)
    pilot, rest = items[:pilot_n], items[pilot_n:]
    config = EmulatorConfig(workers=2)
    if responder:
        config = config.updated({"responder": responder})
    with serve_emulator(config) as emulator:
        client = Client(api_key=emulator.api_key, base_url=emulator.base_url, timeout=600)
        pilot_tally = run_batch(client, emulator, pilot)
        emulator.advance_clock(2 * 3600)  # the pilot's cache entries expire
        calibrated = output_share(pilot, pilot_tally)
        est, seconds = estimate(rest, calibrated)
        default, _ = estimate(rest, None)
        tally = run_batch(client, emulator, rest)
        client.close()
    billed = tally.cost_usd
    return {
        "workload": name,
        "requests": len(rest),
        "billed_usd": billed,
        "expected_usd": est.expected_usd,
        "error": est.expected_usd / billed - 1,
        "worst_usd": est.worst_usd,
        "default_expected_usd": default.expected_usd,
        "default_error": default.expected_usd / billed - 1,
        "estimate_us_per_request": seconds / len(rest) * 1e6,
        "pilot_output_share": calibrated,
        "pilot_mean_output_tokens": output_tokens_from_manifest(pilot_tally.to_dict()),
        "cache_hit_rate": tally.cache_hit_rate,
        "worst_covers_billed": est.worst_usd >= billed,
        "models": {m: e.to_dict() for m, e in est.models.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every request count")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    workloads: list[tuple[str, Workload, int, str | None]] = [
        ("short", short_workload, 2_000, None),
        ("cached", cached_workload, 400, None),
        ("long", long_workload, 400, f"{__name__}:long_answers"),
    ]
    rows = [
        measure(name, build, max(40, int(n * args.scale)), resp)
        for name, build, n, resp in workloads
    ]
    print(
        f"{'workload':<9}{'requests':>9}{'billed $':>12}{'expected $':>12}{'error':>8}"
        f"{'worst $':>12}{'default $':>12}{'error':>8}{'hit rate':>9}{'us/req':>8}  within 15%"
    )
    ok = True
    for r in rows:
        within = abs(r["error"]) <= TARGET and r["worst_covers_billed"]
        ok = ok and within
        print(
            f"{r['workload']:<9}{r['requests']:>9,}{r['billed_usd']:>12.4f}{r['expected_usd']:>12.4f}"
            f"{r['error']:>+8.1%}{r['worst_usd']:>12.4f}{r['default_expected_usd']:>12.4f}"
            f"{r['default_error']:>+8.1%}{(r['cache_hit_rate'] or 0):>9.1%}"
            f"{r['estimate_us_per_request']:>8.0f}  {'yes' if within else 'NO'}"
        )
    print(
        "expected: output at the share of max_tokens a 10% pilot used, per model; "
        "default: output at half of max_tokens"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

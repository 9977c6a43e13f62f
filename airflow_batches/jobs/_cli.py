"""``airflow-batches estimate FILE``: the submit operator's pre-flight, without Airflow.

Validates every request of a JSONL file (``.gz`` read compressed, ``-`` for stdin) against the
generic checks and the model-rules table, and prints the cost estimate: expected and worst
case at batch prices, per model and in total. Nothing is sent, unless ``--count-tokens N``
asks to count a sample with the token-counting endpoint. Exit status: 0, 1 when some requests
are invalid (listed; the rest are still estimated), 3 when ``--max-cost-usd`` refuses the job.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from airflow_batches.api._pricing import load_price_table
from airflow_batches.api._rules import RULE_IDS, load_rules_table
from airflow_batches.jobs._estimate import CostEstimator
from airflow_batches.jobs._prepare import (
    RequestValidationError,
    RequestValidator,
    prepare,
    records_from_jsonl,
)
from airflow_batches.jobs._rules import model_rules_check
from airflow_batches.jobs._spend import (
    CostLimitExceededError,
    check_budget,
    output_tokens_from_manifest,
)

_ENV = "AIRFLOW__AIRFLOW_BATCHES__"
"""The environment form of the ``[airflow_batches]`` options, read without Airflow."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="airflow-batches estimate",
        description="Check a JSONL file of batch requests and estimate what it will cost.",
    )
    p.add_argument("file", help="JSONL of {custom_id, params} (.gz read compressed; - = stdin)")
    p.add_argument("--model", help="estimate as if every request used this model")
    p.add_argument("--anthropic-version", default="2023-06-01")
    p.add_argument("--beta", action="append", default=[], help="batch beta header (repeatable)")
    p.add_argument("--prices", help=f"price file (default ${_ENV}PRICES_PATH)")
    p.add_argument("--rules", help=f"model-rules file (default ${_ENV}MODEL_RULES_PATH)")
    p.add_argument(
        "--disable-rule",
        action="append",
        default=[],
        metavar="RULE",
        help=f"switch a model rule off, or MODEL:RULE ({', '.join(RULE_IDS)})",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output-tokens", type=int, help="expected output tokens per request")
    out.add_argument(
        "--output-from", type=Path, help="a previous job's manifest: its mean output per model"
    )
    p.add_argument("--max-cost-usd", type=float, help="fail (exit 3) when the estimate is over")
    p.add_argument("--worst-case", choices=["ignore", "warn", "fail"], default="warn")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    return p


def _records(stream: IO[bytes], model: str | None) -> Iterator[tuple[str, Any]]:
    for location, raw in records_from_jsonl(stream):
        if model is None or not isinstance(raw, bytes):
            yield location, raw  # an unreadable line: the validator reports it
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            yield location, raw  # the validator reports it
            continue
        if isinstance(item, dict) and isinstance(item.get("params"), dict):
            item["params"]["model"] = model
        yield location, item


def _why(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError):
        return "it is a folder; give a JSONL file"
    return exc.strerror or str(exc)


def estimate_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    rules_path = args.rules or os.environ.get(f"{_ENV}MODEL_RULES_PATH") or None
    prices_path = args.prices or os.environ.get(f"{_ENV}PRICES_PATH") or None
    try:
        table = load_rules_table(rules_path)
        check = model_rules_check(
            anthropic_version=args.anthropic_version,
            betas=args.beta,
            disabled=args.disable_rule,
            table=table,
        )
        expected: Any = args.output_tokens
        if args.output_from is not None:
            expected = output_tokens_from_manifest(json.loads(args.output_from.read_text()))
        estimator = CostEstimator(
            prices=load_price_table(prices_path), rules=table, expected_output_tokens=expected
        )
    except (OSError, ValueError) as exc:
        print(f"airflow-batches estimate: {exc}", file=sys.stderr)
        return 2
    validator = RequestValidator(
        anthropic_version=args.anthropic_version, checks=[check], observers=[estimator]
    )
    with ExitStack() as stack:
        if args.file == "-":
            stream: IO[bytes] = sys.stdin.buffer
        else:
            try:
                stream = stack.enter_context(Path(args.file).open("rb"))
            except OSError as exc:
                print(
                    f"airflow-batches estimate: cannot read {args.file}: {_why(exc)}",
                    file=sys.stderr,
                )
                return 2
            if args.file.endswith(".gz"):
                stream = stack.enter_context(gzip.GzipFile(fileobj=stream))  # type: ignore[arg-type]
        sink = stack.enter_context(Path(os.devnull).open("wb"))
        try:
            prepared = prepare(_records(stream, args.model), validator, sink, on_invalid="skip")
            rejected, problems = prepared.rejected_count, prepared.rejected
        except RequestValidationError as exc:  # nothing valid at all
            print(str(exc), file=sys.stderr)
            return 1
    estimate = estimator.estimate()
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else estimate.summary())
    if rejected:
        shown = "\n  ".join(str(p) for p in problems[:50])
        print(
            f"{rejected} invalid request(s), left out of the estimate:\n  {shown}", file=sys.stderr
        )
    try:
        for warning in check_budget(
            estimate, max_cost_usd=args.max_cost_usd, worst_case=args.worst_case
        ):
            print(f"warning: {warning}", file=sys.stderr)
    except CostLimitExceededError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 3
    return 1 if rejected else 0

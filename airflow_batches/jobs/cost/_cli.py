"""``airflow-batches estimate FILE``: the submit operator's pre-flight, without Airflow.

Validates every request of a JSONL file (``.gz`` read compressed, ``-`` for stdin) against the
generic checks and the model-rules table, as the operator does (``metadata`` accepted, and
``--defaults`` standing for its ``defaults=``), and prints the cost estimate: expected and
worst case at batch prices, per model and in total. Nothing is ever sent. Exit status: 0, 1
when some requests are invalid (listed; the rest are still estimated), 2 for an unreadable
file or option, 3 when ``--max-cost-usd`` would refuse the job.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from airflow_batches.api._pricing import load_price_table
from airflow_batches.api._rules import RULE_IDS, load_rules_table
from airflow_batches.jobs.cost._estimate import CostEstimator
from airflow_batches.jobs.cost._spend import (
    CostLimitExceededError,
    check_budget,
    output_tokens_from_manifest,
)
from airflow_batches.jobs.prepare import (
    Problem,
    RequestValidationError,
    RequestValidator,
    model_rules_check,
    prepare,
    records_from_jsonl,
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
    p.add_argument(
        "--defaults",
        type=_json_object,
        default={},
        metavar="JSON",
        help="params filling what a request leaves out, as the operator's defaults= "
        '(for example \'{"model": "claude-haiku-4-5", "max_tokens": 512}\')',
    )
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
    p.add_argument(
        "--max-cost-usd",
        type=float,
        help="exit 3 when the operator's spend guard with this limit would refuse the job",
    )
    p.add_argument("--worst-case", choices=["ignore", "warn", "fail"], default="warn")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    return p


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of Messages params")
    return value


def _ignore_metadata(custom_id: str, encoded: bytes) -> None:
    """Metadata is the operator's to keep for the fetch; an estimate only accepts it."""


_DEFAULTED = frozenset({"params.model", "params.max_tokens"})


def _hint(fields: Iterable[str]) -> str:
    """What fills a missing model or max_tokens here: the operator's defaults= is --defaults."""
    if _DEFAULTED.isdisjoint(fields):
        return ""
    return (
        "\n(as the operator's defaults= does, --defaults '{\"max_tokens\": 512}' fills what "
        "the requests leave out)"
    )


def _invalid(exc: RequestValidationError) -> str:
    """A refusal of the whole file, said as an estimate says it."""
    if not exc.problems:
        return "nothing to estimate: the file holds no requests (it is empty, or blank lines)"
    lines = [str(Problem(**p)) for p in exc.problems[:50]]
    more = f"\n  ... and {exc.total - len(lines)} more" if exc.total > len(lines) else ""
    return (
        f"nothing to estimate: {exc.total} invalid request(s), none valid:\n  "
        + "\n  ".join(lines)
        + more
        + _hint(p.get("field", "") for p in exc.problems)
    )


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
        anthropic_version=args.anthropic_version,
        defaults=args.defaults,
        checks=[check],
        observers=[estimator],
        metadata=_ignore_metadata,
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
            print(_invalid(exc), file=sys.stderr)
            return 1
    estimate = estimator.estimate()
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else estimate.summary())
    if rejected:
        shown = "\n  ".join(str(p) for p in problems[:50])
        print(
            f"{rejected} invalid request(s), left out of the estimate:\n  {shown}"
            + _hint(p.field for p in problems),
            file=sys.stderr,
        )
    try:
        for warning in check_budget(
            estimate,
            max_cost_usd=args.max_cost_usd,
            worst_case=args.worst_case,
            outcome="SubmitBatchOperator(max_cost_usd=...) would refuse this job",
        ):
            print(f"warning: {warning}", file=sys.stderr)
    except CostLimitExceededError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 3
    return 1 if rejected else 0

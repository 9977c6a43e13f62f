"""Pre-flight: the model-rules check and the cost estimate, in the validator's single pass."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any

import pytest

from airflow_batches.api import Client
from airflow_batches.api._count import count_tokens
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.cost import (
    CostEstimator,
    CostLimitExceededError,
    Estimate,
    check_budget,
    output_tokens_from_manifest,
)
from airflow_batches.jobs.prepare import (
    RequestValidationError,
    RequestValidator,
    model_rules_check,
    prepare,
    records_from_items,
)
from airflow_batches.jobs.results import ResultTally, scan_result_line

MTOK = 1_000_000
VERSION = "2023-06-01"


def req(custom_id: str, model: str, text: str = "x" * 395, **params: Any) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "params": {**body, **params}}


def run(items: list[dict[str, Any]], estimator: CostEstimator, **kw: Any) -> Any:
    validator = RequestValidator(
        anthropic_version=VERSION,
        checks=[model_rules_check(anthropic_version=VERSION, **kw)],
        observers=[estimator],
    )
    return prepare(records_from_items(items), validator, io.BytesIO())


# --- the rules as pre-flight problems ---------------------------------------------------------


def test_every_refusal_is_listed_at_once_with_request_custom_id_field_and_model() -> None:
    items = [
        req("ok", "claude-opus-5-5"),
        req("forced", "claude-opus-5-5", tool_choice={"type": "any"}),
        req("nothink", "claude-fable-5-1", thinking={"type": "disabled"}),
        req("temp", "claude-sonnet-5", temperature=0.5, max_tokens=200_000),
    ]
    with pytest.raises(RequestValidationError) as info:
        run(items, CostEstimator())
    error = info.value
    assert error.total == 4
    fields = [(p["location"], p["custom_id"], p["field"]) for p in error.problems]
    assert fields == [
        ("request 1", "forced", "params.tool_choice.type"),
        ("request 2", "nothink", "params.thinking.type"),
        ("request 3", "temp", "params.max_tokens"),
        ("request 3", "temp", "params.temperature"),
    ]
    text = str(error)
    assert "request 1 (custom_id 'forced'): params.tool_choice.type: " in text
    assert "not supported on claude-opus-5-5" in text
    assert "claude-fable-5-1" in text and "claude-sonnet-5" in text
    assert "disabled_model_rules=['forced_tool_use'] switches it off" in text
    assert "checked 2026-12-01" in text


def test_switched_off_rules_and_the_output_beta() -> None:
    items = [
        req("forced", "claude-opus-5-5", tool_choice={"type": "any"}),
        req("big", "claude-sonnet-5-5", max_tokens=250_000),
    ]
    prepared = run(
        items,
        CostEstimator(),
        disabled=["forced_tool_use"],
        betas=["output-300k-2026-03-24"],
    )
    assert prepared.request_count == 2


# --- the estimate -----------------------------------------------------------------------------


def test_expected_and_worst_case_by_hand() -> None:
    # "user:" + 395 bytes = 400 bytes = 100 tokens on the legacy tokenizer (4 bytes a token).
    estimator = CostEstimator()
    run([req("a", "claude-haiku-4-5"), req("b", "claude-haiku-4-5")], estimator)
    est = estimator.estimate()
    haiku = est.models["claude-haiku-4-5"]
    assert haiku.tokens["input"] == 200
    assert haiku.tokens["output"] == 100  # half of max_tokens, twice
    # batch: 0.5 * (200*1 + 100*5) ; worst: output at max_tokens: 0.5 * (200*1 + 200*5)
    assert est.expected_usd == pytest.approx(0.5 * 700 / MTOK)
    assert est.worst_usd == pytest.approx(0.5 * 1200 / MTOK)
    assert est.standard_usd == pytest.approx(700 / MTOK)
    assert json.loads(json.dumps(est.to_dict()))["saving_usd"] == pytest.approx(350 / MTOK)


def test_newer_tokenizer_counts_30_percent_more_for_the_same_text() -> None:
    estimator = CostEstimator(expected_output_tokens=1)
    run(
        [req("old", "claude-haiku-4-5", "x" * 3995), req("new", "claude-haiku-5-5", "x" * 3995)],
        estimator,
    )
    est = estimator.estimate()
    old, new = est.models["claude-haiku-4-5"], est.models["claude-haiku-5-5"]
    assert old.tokens["input"] == 1000
    assert new.tokens["input"] == 1300
    assert (old.tokenizer, new.tokenizer) == ("legacy", "claude-2026")


def test_cached_prefix_is_written_once_then_read_and_worst_case_writes_every_time() -> None:
    system = [
        {"type": "text", "text": "s" * 8000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    items = [req(f"r{i}", "claude-opus-5-5", "q" * 15, system=system) for i in range(3)]
    estimator = CostEstimator(expected_output_tokens=10)
    run(items, estimator)
    est = estimator.estimate()
    opus = est.models["claude-opus-5-5"]
    # The block as JSON without cache_control: {"text":"s...s","type":"text"} = 8,025 bytes;
    # the 2026 tokenizer counts 3.077 bytes a token. The question: "user:" + 15 bytes.
    written = math.ceil(8025 / 3.077)
    tail = math.ceil(20 / 3.077)
    assert (opus.tokens["cache_write_1h"], opus.tokens["cache_read"]) == (written, 2 * written)
    assert opus.tokens["input"] == 3 * tail
    # Opus 5.5: 1h write $8, read $0.20, input $4, output $20 (batch: half)
    expected = 0.5 * (written * 8 + 2 * written * 0.20 + 3 * tail * 4 + 30 * 20) / MTOK
    worst = 0.5 * (3 * written * 8 + 3 * tail * 4 + 300 * 20) / MTOK
    assert est.expected_usd == pytest.approx(expected)
    assert est.worst_usd == pytest.approx(worst)


def test_haiku_5_5_tier_is_chosen_per_request() -> None:
    small = "a" * 30_000  # ~9,750 tokens
    big = "b" * 400_000  # ~130,000 tokens: over 100,000
    estimator = CostEstimator(expected_output_tokens=50)
    run([req("s", "claude-haiku-5-5", small), req("b", "claude-haiku-5-5", big)], estimator)
    haiku = estimator.estimate().models["claude-haiku-5-5"]
    assert haiku.requests_by_tier == {"prompt <= 100000": 1, "prompt > 100000": 1}
    t_small = -(-(30_000 + 5) * 1000 // 3077)
    t_big = -(-(400_000 + 5) * 1000 // 3077)
    expected = 0.5 * ((t_small * 0.10 + 50 * 0.50) + (t_big * 0.50 + 50 * 2.50)) / MTOK
    assert haiku.expected_usd == pytest.approx(expected, rel=1e-3)


def test_expected_output_per_model_is_capped_at_max_tokens() -> None:
    estimator = CostEstimator(
        expected_output_tokens={"claude-sonnet-5-5": 80, "claude-haiku-4-5": 5000}
    )
    run([req("a", "claude-sonnet-5-5"), req("b", "claude-haiku-4-5-20251001")], estimator)
    models = estimator.estimate().models
    assert models["claude-sonnet-5-5"].tokens["output"] == 80
    assert models["claude-haiku-4-5-20251001"].tokens["output"] == 100  # max_tokens
    share = CostEstimator(output_fraction={"claude-sonnet-5-5": 0.25})
    run([req("a", "claude-sonnet-5-5")], share)
    assert share.estimate().models["claude-sonnet-5-5"].tokens["output"] == 25


def test_unpriced_models_are_named_with_how_to_price_them() -> None:
    estimator = CostEstimator()
    run([req("a", "claude-fable-5-2"), req("b", "claude-haiku-4-5")], estimator)
    est = estimator.estimate()
    assert est.unpriced_models == ["claude-fable-5-2"]
    assert est.models["claude-fable-5-2"].expected_usd is None
    assert any("[airflow_batches] prices_path" in w for w in est.warnings)
    assert "claude-fable-5-2" in est.summary()


def test_a_counted_sample_scales_the_input_of_its_model() -> None:
    calls: list[Mapping[str, Any]] = []

    def double(params: Mapping[str, Any]) -> int:
        calls.append(params)
        return 2 * 100  # twice what the bytes suggest (100 tokens)

    estimator = CostEstimator(sample_size=3)
    run([req(f"r{i}", "claude-haiku-4-5") for i in range(10)], estimator)
    est = estimator.estimate(double)
    assert len(calls) == 3
    assert set(calls[0]) == {"model", "messages"}  # no max_tokens: the endpoint takes none
    haiku = est.models["claude-haiku-4-5"]
    assert haiku.count_ratio == pytest.approx(2.0)
    assert haiku.tokens["input"] == pytest.approx(2000)
    assert estimator.estimate(double).models["claude-haiku-4-5"].tokens["input"] == pytest.approx(
        2000
    )


def test_estimate_lands_on_the_emulator_bill_and_sample_counts_through_the_endpoint(
    emulator: RunningEmulator,
) -> None:
    client = Client(api_key=emulator.api_key, base_url=emulator.base_url)
    items = [
        req(f"r{i}", model, "word " * (20 + i), max_tokens=64)
        for i, model in enumerate(["claude-sonnet-5-5", "claude-haiku-4-5"] * 10)
    ]
    estimator = CostEstimator(expected_output_tokens=64, sample_size=2)
    run(items, estimator)
    est = estimator.estimate(lambda p: count_tokens(client, p))
    assert est.models["claude-sonnet-5-5"].count_ratio == pytest.approx(1.0)
    assert emulator.admin.stats()["count_tokens_calls"] == 4
    batch = client.create(items)
    emulator.wait_ended(batch.id)
    tally = ResultTally()
    for line in client.iter_result_lines(batch.id):
        tally.add(scan_result_line(line))
    billed = tally.usage_by_model
    for model in ("claude-sonnet-5-5", "claude-haiku-4-5"):
        assert est.models[model].tokens["input"] == billed[model].input_tokens
    # The emulator's answers are shorter than max_tokens: the worst case covers the bill.
    assert est.worst_usd >= tally.cost_usd
    client.close()


# --- the guard --------------------------------------------------------------------------------


def _estimate() -> Estimate:
    estimator = CostEstimator()
    run([req("a", "claude-opus-5-5")], estimator)
    return estimator.estimate()


def test_guard_refuses_an_expected_cost_over_the_limit_with_the_figures() -> None:
    est = _estimate()
    assert check_budget(est, max_cost_usd=None) == []
    with pytest.raises(CostLimitExceededError) as info:
        check_budget(est, max_cost_usd=est.expected_usd / 2)
    assert "expected $" in str(info.value) and "max_cost_usd $" in str(info.value)
    assert "nothing was submitted" in str(info.value)


def test_guard_worst_case_policy() -> None:
    est = _estimate()
    between = (est.expected_usd + est.worst_usd) / 2
    assert check_budget(est, max_cost_usd=between, worst_case="ignore") == []
    [warning] = check_budget(est, max_cost_usd=between)
    assert "worst-case" in warning
    with pytest.raises(CostLimitExceededError, match="worst_case='fail'"):
        check_budget(est, max_cost_usd=between, worst_case="fail")
    assert check_budget(est, max_cost_usd=est.worst_usd * 2, worst_case="fail") == []


def test_guard_cannot_check_unpriced_requests() -> None:
    estimator = CostEstimator()
    run([req("a", "claude-fable-5-2")], estimator)
    with pytest.raises(CostLimitExceededError, match="claude-fable-5-2"):
        check_budget(estimator.estimate(), max_cost_usd=1000.0)


def test_output_tokens_from_a_manifest() -> None:
    manifest = {
        "usage_by_model": {
            "claude-sonnet-5-5": {"requests": 4, "output_tokens": 1000},
            "claude-haiku-4-5": {"requests": 0, "output_tokens": 0},
        }
    }
    assert output_tokens_from_manifest(manifest) == {"claude-sonnet-5-5": 250}

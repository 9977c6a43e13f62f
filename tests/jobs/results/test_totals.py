"""The tally's costs: billed (batch prices), standard prices, saving, per model and tier."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from airflow_batches.api._pricing import load_price_table, usage_cost
from airflow_batches.jobs.results import ResultTally, scan_result_line
from tests.jobs.results.test_scan import errored, succeeded

MTOK = 1_000_000


def tally_of(objs: list[dict[str, Any]]) -> ResultTally:
    tally = ResultTally()
    for obj in objs:
        tally.add(scan_result_line(json.dumps(obj).encode()))
    return tally


def cached(model: str, custom_id: str, **usage: Any) -> dict[str, Any]:
    return succeeded(custom_id, model, **usage)


def test_standard_cost_and_saving_per_model_and_in_total() -> None:
    lines = [
        # Sonnet 5.5: 10000*2 + 2000*10 + 4000*4 (1h) + 50000*0.20 = 66,000 micro-USD standard
        cached(
            "claude-sonnet-5-5",
            "a",
            input_tokens=10_000,
            output_tokens=2_000,
            cache_creation_input_tokens=4_000,
            cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4_000},
            cache_read_input_tokens=50_000,
        ),
        # Opus 5.5: 1000*4 + 100*20 + 20000*0.20 = 10,000 micro-USD standard
        cached(
            "claude-opus-5-5",
            "b",
            input_tokens=1_000,
            output_tokens=100,
            cache_read_input_tokens=20_000,
        ),
        errored("c"),
    ]
    summary = tally_of(lines).to_dict()
    sonnet, opus = summary["models"]["claude-sonnet-5-5"], summary["models"]["claude-opus-5-5"]
    assert sonnet["standard_cost_usd"] == pytest.approx(0.066)
    assert sonnet["cost_usd"] == pytest.approx(0.033)
    assert sonnet["saving_usd"] == pytest.approx(0.033)
    assert opus["standard_cost_usd"] == pytest.approx(0.010)
    assert opus["cost_usd"] == pytest.approx(0.005)
    assert summary["cost_usd"] == pytest.approx(0.038)
    assert summary["standard_cost_usd"] == pytest.approx(0.076)
    assert summary["saving_usd"] == pytest.approx(0.038)
    assert summary["cost_complete"] is True
    assert summary["cost_warnings"] == []
    assert sonnet["price_source"].startswith("https://platform.claude.com/docs/")
    assert sonnet["price_checked"] == "2026-12-01"


def test_haiku_5_5_lines_are_priced_each_at_its_own_tier() -> None:
    at = cached("claude-haiku-5-5", "at", input_tokens=100_000, output_tokens=1_000)
    over = cached("claude-haiku-5-5", "over", input_tokens=100_001, output_tokens=1_000)
    tally = tally_of([at, over])
    # standard: 100000*0.10 + 1000*0.50 = 10,500 ; 100001*0.50 + 1000*2.50 = 52,500.5
    assert tally.standard_cost_usd == pytest.approx((10_500 + 52_500.5) / MTOK, rel=1e-12)
    assert tally.cost_usd == pytest.approx((10_500 + 52_500.5) / MTOK / 2, rel=1e-12)
    # Pricing the summed usage at one tier would be wrong either way.
    price = load_price_table()["claude-haiku-5-5"]
    summed = {"input_tokens": 200_001, "output_tokens": 2_000}
    assert tally.cost_usd != pytest.approx(usage_cost(summed, price))
    tiers = tally.to_dict()["models"]["claude-haiku-5-5"]["cost_by_tier"]
    assert tiers == {
        "prompt <= 100000": {"requests": 1, "cost_usd": round(10_500 / MTOK / 2, 6)},
        "prompt > 100000": {"requests": 1, "cost_usd": round(52_500.5 / MTOK / 2, 6)},
    }


def test_tier_uses_cache_reads_and_writes_of_the_line() -> None:
    line = cached(
        "claude-haiku-5-5",
        "x",
        input_tokens=1,
        output_tokens=0,
        cache_read_input_tokens=100_000,
    )
    tally = tally_of([line])
    # 1 + 100,000 = 100,001 prompt tokens: the higher tier, 1*0.50 + 100000*0.05 = 5000.5
    assert tally.standard_cost_usd == pytest.approx(5_000.5 / MTOK, rel=1e-12)


def test_merge_keeps_tiers_and_costs() -> None:
    lines = [
        cached("claude-haiku-5-5", "a", input_tokens=150_000, output_tokens=10),
        cached("claude-haiku-5-5", "b", input_tokens=10, output_tokens=10),
        cached("claude-fable-5-1", "c", input_tokens=10, cache_read_input_tokens=1_000),
    ]
    whole = tally_of(lines)
    left = tally_of(lines[:1])
    left.merge(tally_of(lines[1:]))
    assert left.to_dict() == whole.to_dict()
    assert pickle.loads(pickle.dumps(whole)).to_dict() == whole.to_dict()


def test_unpriced_model_warns_with_its_name_and_how_to_price_it() -> None:
    summary = tally_of(
        [cached("claude-fable-5-2", "a", input_tokens=10), cached("claude-opus-5", "b")]
    ).to_dict()
    assert summary["cost_complete"] is False
    assert summary["unpriced_models"] == ["claude-fable-5-2"]
    entry = summary["models"]["claude-fable-5-2"]
    assert (entry["cost_usd"], entry["standard_cost_usd"], entry["saving_usd"]) == (None,) * 3
    [warning] = summary["cost_warnings"]
    assert "claude-fable-5-2" in warning
    assert "[airflow_batches] prices_path" in warning

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api._models import Usage
from airflow_batches.api._pricing import (
    RATE_FIELDS,
    ModelPrice,
    PriceTable,
    load_price_table,
    tokens_cost,
    unpriced_warning,
    usage_cost,
)

MTOK = 1_000_000


def price(
    input: float, output: float, c5m: float, c1h: float, read: float, **kw: Any
) -> ModelPrice:
    return ModelPrice(
        input=input, output=output, cache_write_5m=c5m, cache_write_1h=c1h, cache_read=read, **kw
    )


SONNET = price(3.0, 15.0, 3.75, 6.0, 0.30)
ODD = price(4.0, 20.0, 5.0, 8.0, 0.20)  # reads at 0.05x input: no multiplier is assumed


# --- the formula, one price at a time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"input_tokens": MTOK}, 2.0),  # 0.5 * 4
        ({"output_tokens": MTOK}, 10.0),  # 0.5 * 20
        ({"cache_write_5m_tokens": MTOK}, 2.5),  # 0.5 * 5
        ({"cache_write_1h_tokens": MTOK}, 4.0),  # 0.5 * 8
        ({"cache_read_tokens": MTOK}, 0.10),  # 0.5 * 0.20, not 0.5 * 0.1 * 4
        ({"web_search_requests": 1000}, 10.0),  # per-use fee, not discounted
        ({"web_fetch_requests": 1000}, 0.0),
        ({}, 0.0),
    ],
)
def test_each_price_is_its_own(counts: dict[str, Any], expected: float) -> None:
    assert tokens_cost(ODD, **counts) == pytest.approx(expected, rel=1e-12)


def test_standard_price_without_batch_discount() -> None:
    assert tokens_cost(SONNET, input_tokens=MTOK, batch=False) == pytest.approx(3.0)
    assert tokens_cost(SONNET, cache_read_tokens=MTOK, batch=False) == pytest.approx(0.30)


def test_us_inference_multiplies_tokens_but_not_tool_fees() -> None:
    cost = tokens_cost(
        SONNET,
        input_tokens=MTOK,
        cache_read_tokens=MTOK,
        web_search_requests=1000,
        us_inference=True,
    )
    assert cost == pytest.approx((1.5 + 0.15) * 1.1 + 10.0, rel=1e-12)


def test_fractional_counts_of_an_estimate() -> None:
    assert tokens_cost(SONNET, input_tokens=0.5 * MTOK) == pytest.approx(0.75)


def test_custom_tool_fees() -> None:
    acme = price(1, 5, 1.25, 2, 0.1, web_search_per_1k=8.0, web_fetch_per_1k=2.0)
    assert tokens_cost(acme, web_search_requests=3, web_fetch_requests=500) == pytest.approx(1.024)


# --- hand-computed costs of today's models, from the packaged table ---------------------------

# One mixed usage: 10,000 input, 2,000 output, 3,000 5-minute writes, 4,000 1-hour writes and
# 50,000 cache reads (prompt 67,000 tokens: Haiku 5.5's lower tier).
MIXED = {
    "input_tokens": 10_000,
    "output_tokens": 2_000,
    "cache_creation_input_tokens": 7_000,
    "cache_creation": {"ephemeral_5m_input_tokens": 3_000, "ephemeral_1h_input_tokens": 4_000},
    "cache_read_input_tokens": 50_000,
}


@pytest.mark.parametrize(
    ("model", "standard_micro_usd"),
    [
        # 10000*in + 2000*out + 3000*5m + 4000*1h + 50000*read, in USD per MTok
        ("claude-sonnet-5-5", 20_000 + 20_000 + 7_500 + 16_000 + 10_000),  # read $0.20
        ("claude-opus-5-5", 40_000 + 40_000 + 15_000 + 32_000 + 10_000),  # read $0.20
        ("claude-fable-5-1", 100_000 + 100_000 + 37_500 + 80_000 + 12_500),  # read $0.25
        ("claude-haiku-5-5", 1_000 + 1_000 + 375 + 800 + 500),  # prompt <= 100,000
        ("claude-sonnet-5", 20_000 + 20_000 + 7_500 + 16_000 + 10_000),
        ("claude-opus-5", 50_000 + 50_000 + 18_750 + 40_000 + 25_000),
        ("claude-fable-5", 100_000 + 100_000 + 37_500 + 80_000 + 50_000),  # read $1
        ("claude-opus-4-8", 50_000 + 50_000 + 18_750 + 40_000 + 25_000),
        ("claude-opus-4-7", 50_000 + 50_000 + 18_750 + 40_000 + 25_000),
        ("claude-opus-4-6", 50_000 + 50_000 + 18_750 + 40_000 + 25_000),
        ("claude-opus-4-5-20251101", 50_000 + 50_000 + 18_750 + 40_000 + 25_000),
        ("claude-haiku-4-5-20251001", 10_000 + 10_000 + 3_750 + 8_000 + 5_000),
        ("claude-sonnet-4-6", 30_000 + 30_000 + 11_250 + 24_000 + 15_000),
    ],
)
def test_cost_of_each_current_model_by_hand(model: str, standard_micro_usd: int) -> None:
    table_price = load_price_table()[model]
    standard = standard_micro_usd / MTOK
    assert usage_cost(MIXED, table_price, batch=False) == pytest.approx(standard, rel=1e-12)
    assert usage_cost(MIXED, table_price) == pytest.approx(standard / 2, rel=1e-12)


def test_haiku_5_5_tier_boundary_is_the_request_prompt_size() -> None:
    haiku = load_price_table()["claude-haiku-5-5"]
    at = {"input_tokens": 100_000, "output_tokens": 1_000}
    over = {"input_tokens": 100_001, "output_tokens": 1_000}
    # up to 100,000 prompt tokens: 100000*0.10 + 1000*0.50 = 10,500 micro-USD standard
    assert usage_cost(at, haiku, batch=False) == pytest.approx(10_500 / MTOK, rel=1e-12)
    # over: every token at the higher tier, output too: 100001*0.50 + 1000*2.50
    assert usage_cost(over, haiku, batch=False) == pytest.approx(52_500.5 / MTOK, rel=1e-12)
    assert usage_cost(over, haiku) == pytest.approx(52_500.5 / MTOK / 2, rel=1e-12)


def test_haiku_5_5_prompt_size_counts_cache_reads_and_writes() -> None:
    haiku = load_price_table()["claude-haiku-5-5"]
    # 10 input + 60,000 1h writes + 40,000 reads = 100,010 prompt tokens: the higher tier.
    usage = {
        "input_tokens": 10,
        "output_tokens": 100,
        "cache_creation_input_tokens": 60_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 60_000},
        "cache_read_input_tokens": 40_000,
    }
    # 10*0.50 + 100*2.50 + 60000*1.00 + 40000*0.05 = 5 + 250 + 60000 + 2000
    assert usage_cost(usage, haiku, batch=False) == pytest.approx(62_255 / MTOK, rel=1e-12)
    assert haiku.tier_index(100_000) == 0
    assert haiku.tier_index(100_001) == 1
    assert haiku.tier_label(1) == "prompt > 100000"


# --- usage_cost reads the wire usage ----------------------------------------------------------


def test_usage_without_breakdown_counts_cache_writes_as_5m() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 0, "cache_creation_input_tokens": 2000}
    assert usage_cost(usage, SONNET) == pytest.approx(0.5 * (3000 + 2000 * 3.75) / MTOK)


def test_usage_nulls_and_missing_counts_are_zero() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 10,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "server_tool_use": None,
    }
    assert usage_cost(usage, SONNET) == pytest.approx(0.5 * (30 + 150) / MTOK)
    assert usage_cost({}, SONNET) == 0.0


def test_usage_cost_takes_the_wire_model_and_its_inference_geo() -> None:
    usage = Usage.model_validate(
        {
            "input_tokens": MTOK,
            "output_tokens": 0,
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
            "inference_geo": "us",  # not a declared field yet: read from the model's extras
        }
    )
    assert usage_cost(usage, SONNET) == pytest.approx(1.5 * 1.1 + 0.02)
    assert usage_cost(usage, SONNET, inference_geo="global") == pytest.approx(1.5 + 0.02)


def test_usage_cost_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        usage_cost({"input_tokens": -1}, SONNET)


# --- lookup -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-haiku-5-5", "claude-haiku-5-5"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5"),
        ("claude-sonnet-5", "claude-sonnet-5"),
        ("claude-opus-5-5", "claude-opus-5-5"),
        ("claude-fable-5-1", "claude-fable-5-1"),
        ("claude-fable-5", "claude-fable-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("Claude-Sonnet-4-5", "claude-sonnet-4-5"),
    ],
)
def test_dated_ids_and_aliases_resolve(model: str, key: str) -> None:
    table = load_price_table()
    assert table.resolve(model) == key
    assert table.get(model) is table.prices[key]
    assert model in table


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "claude",
        "claude-opus-4-9",
        "claude-sonnet-5-6",
        "claude-fable-5-2",
        "claude-opus-6",
    ],
)
def test_unknown_models_are_never_guessed(model: str) -> None:
    table = load_price_table()
    assert table.get(model) is None
    assert model not in table
    with pytest.raises(KeyError):
        table[model]


def test_a_new_minor_version_does_not_inherit_the_family_price() -> None:
    table = PriceTable({"claude-opus-4": price(15, 75, 18.75, 30, 1.5)})
    assert table.get("claude-opus-4-20250514") is not None
    assert table.get("claude-opus-4-7") is None


def test_table_pickles() -> None:
    table = load_price_table(
        {"acme": {**dict.fromkeys(RATE_FIELDS, 1.0), "output": 2, "aliases": ["acme-x"]}}
    )
    copy = pickle.loads(pickle.dumps(table))
    assert copy.prices == table.prices
    assert copy.resolve("acme-x-20260101") == "acme"


def test_alias_to_unknown_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="ghost"):
        PriceTable({"a": SONNET}, {"ghost": "missing"})


def test_unpriced_warning_names_the_model_and_prices_path() -> None:
    text = unpriced_warning(["claude-fable-5-2"])
    assert "claude-fable-5-2" in text
    assert "[airflow_batches] prices_path" in text
    assert "cache_read" in text


# --- overrides --------------------------------------------------------------------------------


def test_inline_override_changes_one_field_and_adds_a_model() -> None:
    table = load_price_table(
        {
            "claude-sonnet-4-5": {"input": 2.5},
            "my-finetune": {
                "input": 4,
                "output": 20,
                "cache_write_5m": 5,
                "cache_write_1h": 8,
                "cache_read": 0.4,
                "aliases": ["my-ft"],
            },
        }
    )
    assert table.prices["claude-sonnet-4-5"].input == 2.5
    assert table.prices["claude-sonnet-4-5"].cache_read == 0.30
    assert table.get("my-finetune-20260101") == price(4, 20, 5, 8, 0.4, source="overrides")
    assert table.resolve("my-ft") == "my-finetune"
    assert load_price_table().prices["claude-sonnet-4-5"].input == 3.0


def test_a_new_model_needs_every_price() -> None:
    with pytest.raises(ValueError, match="cache_write_5m, cache_write_1h, cache_read required"):
        load_price_table({"new-model": {"input": 1, "output": 2}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"claude-haiku-4-5": {"ouput": 1}}, "ouput: Extra inputs are not permitted"),
        ({"claude-haiku-4-5": {"input": -1}}, "input: Input should be greater than or equal"),
        ({"claude-haiku-4-5": {"input": float("nan")}}, "input: Input should be a finite"),
        ({"claude-haiku-4-5": {"aliases": "x"}}, "aliases must be a list"),
    ],
)
def test_bad_overrides_name_the_model_and_field(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="price table overrides") as info:
        load_price_table(override)
    assert message in str(info.value)


def test_overrides_from_a_toml_file_with_tiers(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."claude-haiku-4-5"]\ninput = 0.9\n\n'
        '[models."acme-1"]\ninput = 1\noutput = 2\ncache_write_5m = 1.25\n'
        "cache_write_1h = 2\ncache_read = 0.1\nweb_search_per_1k = 5\nchecked = 2026-11-30\n"
        '[[models."acme-1".tiers]]\nabove_prompt_tokens = 1000\ninput = 2\noutput = 4\n'
        "cache_write_5m = 2.5\ncache_write_1h = 4\ncache_read = 0.2\n"
    )
    table = load_price_table(path)
    assert table.prices["claude-haiku-4-5"].input == 0.9
    acme = table.prices["acme-1"]
    assert acme.source == str(path)
    assert acme.checked == dt.date(2026, 11, 30)
    assert usage_cost({"input_tokens": 1001}, acme, batch=False) == pytest.approx(2002 / MTOK)
    assert load_price_table(str(path)).prices == table.prices


def test_tiers_must_ascend() -> None:
    tier = {**dict.fromkeys(RATE_FIELDS, 1.0)}
    with pytest.raises(ValueError, match="increasing"):
        price(
            1,
            2,
            1,
            1,
            1,
            tiers=(
                {**tier, "above_prompt_tokens": 10},
                {**tier, "above_prompt_tokens": 5},
            ),
        )


def test_override_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[models.\n")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        load_price_table(bad_toml)
    yaml = tmp_path / "prices.yaml"
    yaml.write_text("{}")
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        load_price_table(yaml)
    bad_entry = tmp_path / "entry.json"
    bad_entry.write_text(json.dumps({"models": {"acme": 3}}))
    with pytest.raises(ValueError, match="each a table"):
        load_price_table(bad_entry)


# --- the packaged default table ---------------------------------------------------------------


def test_every_packaged_entry_is_explicit_dated_and_sourced() -> None:
    table = load_price_table()
    assert len(table) >= 20
    for model, entry in table.prices.items():
        assert entry.source and entry.source.startswith("https://platform.claude.com/docs/"), model
        assert entry.checked == dt.date(2026, 12, 1), model
        assert entry.output > entry.input > entry.cache_read > 0, model
        assert entry.cache_write_1h > entry.cache_write_5m > entry.input, model
        assert entry.web_search_per_1k == 10.0, model


def test_the_issue_figures_of_today() -> None:
    table = load_price_table()

    def row(model: str) -> tuple[float, ...]:
        p = table[model]
        return (p.input, p.output, p.cache_write_5m, p.cache_write_1h, p.cache_read)

    assert row("claude-sonnet-5") == (2, 10, 2.5, 4, 0.2)
    assert row("claude-opus-5-5") == (4, 20, 5, 8, 0.2)
    assert row("claude-opus-5") == (5, 25, 6.25, 10, 0.5)
    assert row("claude-fable-5-1") == (10, 50, 12.5, 20, 0.25)
    assert row("claude-haiku-4-5") == (1, 5, 1.25, 2, 0.1)
    # Sonnet 5.5 reads its cache at half Sonnet 5's rate since 2026-10-07 (migration guide).
    assert row("claude-sonnet-5-5") == (2, 10, 2.5, 4, 0.2)


@pytest.mark.parametrize(
    ("model", "batch_input", "batch_output"),
    [  # the spec's batch price table
        ("claude-3-7-sonnet-20250219", 1.50, 7.50),
        ("claude-3-5-sonnet-20241022", 1.50, 7.50),
        ("claude-3-opus-20240229", 7.50, 37.50),
        ("claude-3-5-haiku-20241022", 0.40, 2.00),
        ("claude-3-haiku-20240307", 0.125, 0.625),
    ],
)
def test_default_batch_prices_match_the_spec(
    model: str, batch_input: float, batch_output: float
) -> None:
    p = load_price_table()[model]
    assert tokens_cost(p, input_tokens=MTOK) == pytest.approx(batch_input)
    assert tokens_cost(p, output_tokens=MTOK) == pytest.approx(batch_output)


def test_default_table_is_loaded_once() -> None:
    assert load_price_table() is load_price_table()

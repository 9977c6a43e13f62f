from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api._models import Usage
from airflow_batches.api._pricing import (
    ModelPrice,
    PriceTable,
    load_price_table,
    tokens_cost,
    usage_cost,
)

SONNET = ModelPrice(input=3.0, output=15.0)
MTOK = 1_000_000


# --- the formula, one multiplier at a time ------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"input_tokens": MTOK}, 1.5),  # 0.5 * 3
        ({"output_tokens": MTOK}, 7.5),  # 0.5 * 15
        ({"cache_write_5m_tokens": MTOK}, 1.875),  # 0.5 * 1.25 * 3
        ({"cache_write_1h_tokens": MTOK}, 3.0),  # 0.5 * 2 * 3
        ({"cache_read_tokens": MTOK}, 0.15),  # 0.5 * 0.1 * 3
        ({"web_search_requests": 1000}, 10.0),  # per-use fee, not discounted
        ({"web_fetch_requests": 1000}, 0.0),
        ({}, 0.0),
    ],
)
def test_each_multiplier(counts: dict[str, Any], expected: float) -> None:
    assert tokens_cost(SONNET, **counts) == pytest.approx(expected, rel=1e-12)


def test_standard_price_without_batch_discount() -> None:
    assert tokens_cost(SONNET, input_tokens=MTOK, batch=False) == pytest.approx(3.0)
    assert tokens_cost(SONNET, output_tokens=MTOK, batch=False) == pytest.approx(15.0)


def test_us_inference_multiplies_tokens_but_not_tool_fees() -> None:
    cost = tokens_cost(
        SONNET,
        input_tokens=MTOK,
        cache_read_tokens=MTOK,
        web_search_requests=1000,
        us_inference=True,
    )
    assert cost == pytest.approx((1.5 + 0.15) * 1.1 + 10.0, rel=1e-12)


def test_mixed_usage_hand_computed() -> None:
    # 1200*3 + 300*3.75 + 100*6 + 5000*0.3 + 800*15 = 3600 + 1125 + 600 + 1500 + 12000 = 18825
    cost = tokens_cost(
        SONNET,
        input_tokens=1200,
        cache_write_5m_tokens=300,
        cache_write_1h_tokens=100,
        cache_read_tokens=5000,
        output_tokens=800,
    )
    assert cost == pytest.approx(18825 / MTOK * 0.5, rel=1e-12)


def test_custom_web_search_price() -> None:
    price = ModelPrice(input=1, output=5, web_search_per_1k=8.0, web_fetch_per_1k=2.0)
    assert tokens_cost(price, web_search_requests=3, web_fetch_requests=500) == pytest.approx(
        0.024 + 1.0
    )


# --- usage_cost reads the wire usage ----------------------------------------------------------


def test_usage_without_breakdown_counts_cache_writes_as_5m() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 0, "cache_creation_input_tokens": 2000}
    assert usage_cost(usage, SONNET) == pytest.approx(0.5 * (3000 + 2000 * 3.75) / MTOK)


def test_usage_with_breakdown_prices_each_lifetime() -> None:
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    }
    assert usage_cost(usage, SONNET) == pytest.approx(0.5 * (1000 * 3.75 + 2000 * 6) / MTOK)


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


def test_explicit_inference_geo_when_usage_does_not_say() -> None:
    usage = {"input_tokens": MTOK, "output_tokens": 0}
    assert usage_cost(usage, SONNET, inference_geo="us") == pytest.approx(1.65)
    assert usage_cost(usage, SONNET, batch=False) == pytest.approx(3.0)


def test_usage_cost_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        usage_cost({"input_tokens": -1}, SONNET)


# --- lookup -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-haiku-4-5", "claude-haiku-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("Claude-Sonnet-4-5", "claude-sonnet-4-5"),
    ],
)
def test_dated_ids_and_aliases_resolve(model: str, key: str) -> None:
    table = load_price_table()
    assert table.resolve(model) == key
    assert table.get(model) is table.prices[key]
    assert model in table


@pytest.mark.parametrize(
    "model", ["gpt-4o", "claude", "claude-opus", "claude-opus-4-9", "claude-sonnet-4-7-20270101"]
)
def test_unknown_models_are_never_guessed(model: str) -> None:
    table = load_price_table()
    assert table.get(model) is None
    assert model not in table
    with pytest.raises(KeyError):
        table[model]


def test_a_new_minor_version_does_not_inherit_the_family_price() -> None:
    # claude-opus-4 is 15/75 but 4.5+ are 5/25: prefix matching must stop at a version number.
    table = PriceTable({"claude-opus-4": ModelPrice(input=15, output=75)})
    assert table.get("claude-opus-4-20250514") is not None
    assert table.get("claude-opus-4-7") is None
    assert table.get("claude-opus-4-7-20270101") is None


def test_longest_prefix_wins() -> None:
    table = PriceTable(
        {
            "acme-model": ModelPrice(input=1, output=2),
            "acme-model-pro": ModelPrice(input=3, output=4),
        }
    )
    assert table.resolve("acme-model-pro-20260101") == "acme-model-pro"
    assert table.resolve("acme-model-20260101") == "acme-model"
    # Only at a boundary: "acme-modelx" is another model.
    assert table.resolve("acme-modelx") is None


def test_table_pickles() -> None:
    table = load_price_table({"acme": {"input": 1, "output": 2, "aliases": ["acme-x"]}})
    copy = pickle.loads(pickle.dumps(table))
    assert copy.prices == table.prices
    assert copy.aliases == table.aliases
    assert copy.resolve("acme-x-20260101") == "acme"


def test_alias_to_unknown_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="ghost"):
        PriceTable({"a": ModelPrice(input=1, output=2)}, {"ghost": "missing"})


# --- overrides --------------------------------------------------------------------------------


def test_inline_override_changes_one_field_and_adds_a_model() -> None:
    table = load_price_table(
        {
            "claude-sonnet-4-5": {"input": 2.5},
            "my-finetune": {"input": 4, "output": 20, "aliases": ["my-ft"]},
        }
    )
    assert table.prices["claude-sonnet-4-5"] == ModelPrice(input=2.5, output=15.0)
    assert table.get("my-finetune-20260101") == ModelPrice(input=4, output=20)
    assert table.resolve("my-ft") == "my-finetune"
    # The defaults are not mutated by an override.
    assert load_price_table().prices["claude-sonnet-4-5"].input == 3.0


def test_override_of_an_alias_gives_it_its_own_price() -> None:
    table = load_price_table({"claude-opus-4-0": {"input": 1, "output": 2}})
    assert table.resolve("claude-opus-4-0") == "claude-opus-4-0"
    assert table.resolve("claude-opus-4-20250514") == "claude-opus-4"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"new-model": {"input": 1}}, "'new-model': output: Field required"),
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


def test_overrides_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."claude-haiku-4-5"]\ninput = 0.9\n\n'
        '[models."acme-1"]\ninput = 1\noutput = 2\nweb_search_per_1k = 5\n'
    )
    table = load_price_table(path)
    assert table.prices["claude-haiku-4-5"] == ModelPrice(input=0.9, output=5.0)
    assert table.prices["acme-1"].web_search_per_1k == 5.0
    assert load_price_table(str(path)).prices == table.prices


def test_overrides_from_a_json_file_without_models_key(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"acme-2": {"input": 1.5, "output": 7.5}}))
    assert load_price_table(path).get("acme-2-20260101") == ModelPrice(input=1.5, output=7.5)


def test_override_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[models.\n")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        load_price_table(bad_toml)
    yaml = tmp_path / "prices.yaml"
    yaml.write_text("{}")
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        load_price_table(yaml)
    not_a_table = tmp_path / "list.json"
    not_a_table.write_text("[1, 2]")
    with pytest.raises(ValueError, match="top level"):
        load_price_table(not_a_table)
    bad_entry = tmp_path / "entry.json"
    bad_entry.write_text(json.dumps({"models": {"acme": 3}}))
    with pytest.raises(ValueError, match="each a table"):
        load_price_table(bad_entry)


# --- the packaged default table ------------------------------------------------------------


def test_default_table_sanity() -> None:
    table = load_price_table()
    assert len(table) >= 10
    for model, price in table.prices.items():
        assert price.input > 0, model
        assert price.output > price.input, model
        assert price.web_search_per_1k == 10.0, model


@pytest.mark.parametrize(
    ("model", "batch_input", "batch_output"),
    [  # the spec's batch price table, and the newer models it names
        ("claude-3-7-sonnet-20250219", 1.50, 7.50),
        ("claude-3-5-sonnet-20241022", 1.50, 7.50),
        ("claude-3-opus-20240229", 7.50, 37.50),
        ("claude-3-5-haiku-20241022", 0.40, 2.00),
        ("claude-3-haiku-20240307", 0.125, 0.625),
        ("claude-sonnet-4-5-20250929", 1.50, 7.50),
        ("claude-haiku-4-5-20251001", 0.50, 2.50),
        ("claude-opus-4-5-20251101", 2.50, 12.50),
        ("claude-opus-4-1-20250805", 7.50, 37.50),
        ("claude-opus-4-20250514", 7.50, 37.50),
        ("claude-sonnet-4-20250514", 1.50, 7.50),
    ],
)
def test_default_batch_prices_match_the_spec(
    model: str, batch_input: float, batch_output: float
) -> None:
    price = load_price_table()[model]
    assert tokens_cost(price, input_tokens=MTOK) == pytest.approx(batch_input)
    assert tokens_cost(price, output_tokens=MTOK) == pytest.approx(batch_output)


def test_default_table_is_loaded_once() -> None:
    assert load_price_table() is load_price_table()

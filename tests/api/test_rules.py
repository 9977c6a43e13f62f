"""The model-rules table and its checker (shared by pre-flight and the emulator)."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api._rules import RULE_IDS, ModelRules, load_rules_table

BETA_300K = "output-300k-2026-03-24"


def params(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def rules_broken(model: str, betas: tuple[str, ...] = (), **extra: Any) -> list[str]:
    return [v.rule for v in ModelRules(betas=betas).check(params(model, **extra))]


FORCED = {"tool_choice": {"type": "tool", "name": "t"}}
ANY = {"tool_choice": {"type": "any"}}
NO_THINKING = {"thinking": {"type": "disabled"}}
BUDGET = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
PREFILL = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}]}


@pytest.mark.parametrize(
    ("model", "extra", "rule"),
    [
        ("claude-opus-5-5", FORCED, "forced_tool_use"),
        ("claude-opus-5-5", ANY, "forced_tool_use"),
        ("claude-sonnet-5-5", FORCED, "forced_tool_use"),
        ("claude-fable-5-1", ANY, "forced_tool_use"),
        ("claude-opus-5-5", NO_THINKING, "thinking_disabled"),
        ("claude-fable-5-1", NO_THINKING, "thinking_disabled"),
        ("claude-fable-5", NO_THINKING, "thinking_disabled"),
        ("claude-sonnet-5-5", NO_THINKING, "thinking_disabled"),
        ("claude-sonnet-5", {"temperature": 0.2}, "sampling_params"),
        ("claude-sonnet-5", {"top_p": 0.9}, "sampling_params"),
        ("claude-sonnet-5", {"top_k": 40}, "sampling_params"),
        ("claude-sonnet-5-5", {"temperature": 0}, "sampling_params"),
        ("claude-haiku-5-5", {"temperature": 0.7}, "sampling_params"),
        ("claude-sonnet-5", BUDGET, "manual_thinking"),
        ("claude-sonnet-5-5", BUDGET, "manual_thinking"),
        ("claude-haiku-5-5", BUDGET, "manual_thinking"),
        ("claude-sonnet-5-5", PREFILL, "assistant_prefill"),
        ("claude-haiku-5-5", PREFILL, "assistant_prefill"),
        (
            "claude-opus-5",
            {**NO_THINKING, "output_config": {"effort": "max"}},
            "thinking_disabled_above_high_effort",
        ),
    ],
)
def test_each_model_refuses_what_its_page_says(
    model: str, extra: dict[str, Any], rule: str
) -> None:
    assert rules_broken(model, **extra) == [rule]


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("claude-opus-5", FORCED),  # forced tool use is new in the 5.5 generation and Fable 5.1
        ("claude-sonnet-5", ANY),
        ("claude-fable-5", FORCED),
        ("claude-haiku-4-5", FORCED),
        ("claude-sonnet-5", NO_THINKING),
        ("claude-haiku-4-5", NO_THINKING),
        ("claude-opus-5", {**NO_THINKING, "output_config": {"effort": "high"}}),
        ("claude-opus-5", NO_THINKING),
        ("claude-sonnet-5", {"temperature": 1}),  # the default value is not a change
        ("claude-sonnet-5", {"temperature": 1.0, "top_p": 1}),
        ("claude-opus-5-5", {"temperature": 0.2}),
        ("claude-haiku-4-5", {**BUDGET, "temperature": 0.2}),
        ("claude-sonnet-5", PREFILL),
        ("claude-sonnet-5-5", {"thinking": {"type": "adaptive"}, "tool_choice": {"type": "auto"}}),
        ("claude-sonnet-5-5", {"thinking": {"type": "between_tools"}}),
        ("claude-imaginary-9", {**FORCED, **NO_THINKING, "max_tokens": 10**7}),
    ],
)
def test_what_a_model_accepts_is_not_refused(model: str, extra: dict[str, Any]) -> None:
    assert rules_broken(model, **extra) == []


def test_all_rules_of_a_request_are_listed_with_fields_and_the_model() -> None:
    found = ModelRules().check(
        params("claude-sonnet-5-5", max_tokens=200_000, temperature=0.3, **ANY, **PREFILL)
    )
    assert [(v.rule, v.field, v.api_field) for v in found] == [
        ("max_output", "max_tokens", "max_tokens"),
        ("forced_tool_use", "tool_choice.type", "tool_choice.type"),
        ("sampling_params", "temperature", "temperature"),
        ("assistant_prefill", "messages[1].role", "messages.1.role"),
    ]
    assert all("claude-sonnet-5-5" in v.message for v in found)
    assert found[0].message == (
        "200000 > 128000, which is the maximum allowed number of output tokens for "
        "claude-sonnet-5-5"
    )


@pytest.mark.parametrize(
    ("model", "betas", "limit"),
    [
        ("claude-sonnet-5-5", (), 128_000),
        ("claude-sonnet-5-5", (BETA_300K,), 300_000),
        ("claude-opus-5-5", (BETA_300K,), 300_000),
        ("claude-opus-5", (BETA_300K,), 300_000),
        ("claude-sonnet-5", (BETA_300K,), 300_000),
        ("claude-haiku-4-5-20251001", (), 64_000),
        ("claude-opus-4-1", (), 32_000),
        ("claude-3-7-sonnet-20250219", ("output-128k-2025-02-19",), 128_000),
        # No page says these take the beta, and none says they refuse it: not refused.
        ("claude-fable-5-1", (BETA_300K,), 300_000),
        ("claude-haiku-5-5", (BETA_300K,), 300_000),
    ],
)
def test_max_output_per_model_and_beta(model: str, betas: tuple[str, ...], limit: int) -> None:
    rules = ModelRules(betas=betas)
    assert rules.output_limit(model) == limit
    assert rules.check(params(model, max_tokens=limit)) == []
    assert [v.rule for v in rules.check(params(model, max_tokens=limit + 1))] == ["max_output"]


def test_unknown_models_have_no_limit_here() -> None:
    assert ModelRules().output_limit("claude-fable-5-2") is None


def test_rules_switch_off_everywhere_or_for_one_model() -> None:
    request = params("claude-opus-5-5", **ANY)
    assert ModelRules(disabled=["forced_tool_use"]).check(request) == []
    assert ModelRules(disabled=["claude-opus-5-5:forced_tool_use"]).check(request) == []
    assert ModelRules(disabled=["claude-sonnet-5-5:forced_tool_use"]).check(request) != []
    big = params("claude-sonnet-5-5", max_tokens=500_000)
    assert ModelRules(disabled=["max_output"]).check(big) == []
    with pytest.raises(ValueError, match="unknown rule 'force_tool'"):
        ModelRules(disabled=["force_tool"])


def test_a_parameter_the_version_removed_is_left_to_the_version_check() -> None:
    rules = ModelRules(removed_params={"temperature", "top_p", "top_k"})
    assert rules.check(params("claude-sonnet-5", temperature=0.1)) == []


def test_every_packaged_entry_is_sourced_and_dated() -> None:
    table = load_rules_table()
    assert {"claude-sonnet-5-5", "claude-opus-5-5", "claude-fable-5-1", "claude-haiku-5-5"} <= set(
        table.models
    )
    for name, spec in table.models.items():
        assert spec.source and spec.source.startswith("https://platform.claude.com/docs/"), name
        assert spec.checked == dt.date(2026, 12, 1), name
        assert spec.max_output_tokens, name
        assert set(spec.refuses) <= set(RULE_IDS), name
    assert set(table.messages) == set(RULE_IDS)


def test_tokenizer_families() -> None:
    table = load_rules_table()
    new, old = table.tokenizer("claude-haiku-5-5"), table.tokenizer("claude-haiku-4-5-20251001")
    # "the same text counts as approximately 30% more tokens than on Claude Haiku 4.5"
    assert old.bytes_per_token / new.bytes_per_token == pytest.approx(1.3, abs=0.001)
    assert table.tokenizer_name("claude-opus-4-7") == "claude-2026"
    assert table.tokenizer_name("claude-opus-4-6") == "legacy"
    assert table.tokenizer_name("claude-sonnet-5") == "claude-2026"
    assert table.tokenizer_name("claude-unheard-of-7") == "claude-2026"  # the default


def test_override_file_adds_and_changes_models(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[models."claude-opus-5-5"]\nrefuses = ["thinking_disabled"]\n\n'
        '[models."acme-1"]\nmax_output_tokens = 1000\ntokenizer = "legacy"\n'
        'refuses = ["assistant_prefill"]\n'
    )
    table = load_rules_table(path)
    rules = ModelRules(table)
    assert rules.check(params("claude-opus-5-5", **ANY)) == []
    assert [v.rule for v in rules.check(params("acme-1", max_tokens=1001, **PREFILL))] == [
        "max_output",
        "assistant_prefill",
    ]
    assert load_rules_table().models["claude-opus-5-5"].refuses != ("thinking_disabled",)
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."x"]\nrefuses = ["nope"]\n')
    with pytest.raises(ValueError, match="unknown rule"):
        load_rules_table(bad)


def test_table_pickles() -> None:
    table = load_rules_table()
    copy = pickle.loads(pickle.dumps(table))
    assert copy.models == table.models
    assert copy.resolve("claude-haiku-4-5-20251001") == "claude-haiku-4-5"

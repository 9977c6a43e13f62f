"""The ``anthropic-beta`` values the emulator accepts come from data (``betas.toml``), cover the
installed SDK's whole list, and the betas it honours change what a request may contain.

The SDK's list is read from the installed SDK at test time: a new pin that names a value the
table lacks fails here, not in a user's run.
"""

from __future__ import annotations

import datetime
import typing
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types.anthropic_beta_param import AnthropicBetaParam
from anthropic.types.beta.messages import BetaMessageBatchIndividualResponse
from anthropic.types.messages import MessageBatchIndividualResponse

from airflow_batches.emulator import EmulatorConfig
from airflow_batches.emulator.betas import (
    BINDING_BETA,
    DISPLAY_UPDATES_BETA,
    known_betas,
    load_beta_table,
    parse_beta_table,
)
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import request

SDK_SOURCE = "sdk"
BOUND = {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "drop_block"}}


def installed_sdk_betas() -> tuple[str, ...]:
    (names,) = [typing.get_args(a) for a in typing.get_args(AnthropicBetaParam) if a is not str]
    return tuple(names)


def _results(
    emulator: RunningEmulator, items: list[dict[str, Any]], betas: list[str]
) -> dict[str, Any]:
    """Create a batch with these betas (raw HTTP, the header as given), wait, and read each
    result line strictly with the pinned SDK's beta types."""
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    if betas:
        headers["anthropic-beta"] = ",".join(betas)
    created = httpx.post(
        emulator.base_url + "/v1/messages/batches", json={"requests": items}, headers=headers
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    emulator.wait_ended(batch_id)
    lines = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch_id}/results", headers=headers
    )
    assert lines.status_code == 200
    out = {}
    for raw in lines.text.splitlines():
        line = BetaMessageBatchIndividualResponse.model_validate_json(raw, strict=True)
        out[line.custom_id] = line.result
    return out


def test_the_table_is_the_installed_sdks_list_plus_dated_newer_ones() -> None:
    table = load_beta_table()
    sdk = installed_sdk_betas()
    from_sdk = [name for name, beta in table.betas.items() if beta.source == SDK_SOURCE]
    missing = sorted(set(sdk) - set(table.betas))
    assert not missing, f"add to airflow_batches/emulator/betas.toml: {missing}"
    assert sorted(from_sdk) == sorted(sdk), "entries say the SDK names them, but it does not"
    # The pinned SDK's source names the installed version: a new pin re-dates it.
    assert f"/anthropic/{anthropic.__version__}/" in table.sources[SDK_SOURCE].url
    newer = [name for name in table.betas if name not in sdk]
    assert newer, "the dated list of newer betas is empty"
    for name in newer:
        source = table.source_of(name)
        assert source.url.startswith("https://platform.claude.com/docs/"), name
        assert source.checked >= datetime.date(2026, 12, 1), name
    for name, beta in table.betas.items():
        assert beta.note.strip(), name
    assert known_betas() == tuple(table.betas)
    assert EmulatorConfig().betas == list(table.betas)


def test_a_bad_table_names_its_entry() -> None:
    good = b'[sources.s]\nurl = "u"\nchecked = 2026-12-06\nnote = "n"\n'
    with pytest.raises(ValueError, match=r"betas\.x-2026-01-01\.source: 'nope' is not a key"):
        parse_beta_table(
            good + b'[betas."x-2026-01-01"]\nsource = "nope"\nemulator = "ignored"\nnote = "n"\n',
            "betas.toml",
        )
    with pytest.raises(ValueError, match=r"betas\.toml: .*emulator"):
        parse_beta_table(
            good + b'[betas."x-2026-01-01"]\nsource = "s"\nemulator = "maybe"\nnote = "n"\n',
            "betas.toml",
        )
    with pytest.raises(ValueError, match=r"betas\.toml: .*pattern"):
        parse_beta_table(
            good + b'[betas."Has Space"]\nsource = "s"\nemulator = "ignored"\nnote = "n"\n',
            "betas.toml",
        )


def test_every_beta_of_the_sdk_and_the_newer_list_is_accepted(
    emulator: RunningEmulator,
) -> None:
    """The whole table in one header, through the pinned SDK's beta namespace, and each value
    on its own (a value the API would refuse gets the 400 naming it, so each must pass)."""
    everything = list(known_betas())
    assert set(installed_sdk_betas()) <= set(everything)
    with anthropic.Anthropic(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0
    ) as sdk:
        batch = sdk.beta.messages.batches.create(
            requests=[request("all", thinking=BOUND)], betas=everything
        )
        emulator.wait_ended(batch.id)
        (line,) = list(sdk.beta.messages.batches.results(batch.id, betas=everything))
        assert line.result.type == "succeeded"
        for name in everything:
            listed = sdk.beta.messages.batches.with_raw_response.list(betas=[name])
            assert listed.http_response.status_code == 200, name


def test_an_unknown_beta_is_the_apis_400(emulator: RunningEmulator) -> None:
    with (
        anthropic.Anthropic(
            api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0
        ) as sdk,
        pytest.raises(anthropic.BadRequestError) as caught,
    ):
        sdk.beta.messages.batches.create(
            requests=[request("a")], betas=[BINDING_BETA, "made-up-2099-01-01"]
        )
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "`made-up-2099-01-01`" in str(caught.value)
    assert BINDING_BETA not in str(caught.value)


def test_a_config_list_replaces_the_table(emulator_factory: Any) -> None:
    emulator = emulator_factory(EmulatorConfig(betas=["message-batches-2024-09-24"]))
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    url = emulator.base_url + "/v1/messages/batches"
    allowed = httpx.get(url, headers={**headers, "anthropic-beta": "message-batches-2024-09-24"})
    assert allowed.status_code == 200
    refused = httpx.get(url, headers={**headers, "anthropic-beta": BINDING_BETA})
    assert refused.status_code == 400


def test_block_binding_needs_its_beta(emulator: RunningEmulator) -> None:
    items = [
        request("bound", model="claude-opus-5-5", thinking=BOUND),
        request("empty", model="claude-opus-5-5", thinking={**BOUND, "block_binding": {}}),
        request("enabled", thinking={"type": "enabled", "budget_tokens": 1024, **_binding()}),
        request("disabled", thinking={"type": "disabled", **_binding()}),
        request("bad", thinking={"type": "adaptive", "block_binding": {"mode": "x"}}),
        request("value", thinking={"type": "adaptive", **_binding("ignore")}),
    ]
    without = _results(emulator, items[:1], [])
    assert without["bound"].type == "errored"
    assert without["bound"].error.error.message == (
        "thinking.block_binding: Extra inputs are not permitted (it needs the "
        f"`{BINDING_BETA}` beta in the anthropic-beta header)"
    )
    with_beta = _results(emulator, items, [BINDING_BETA])
    assert {k: r.type for k, r in with_beta.items()} == {
        "bound": "succeeded",
        "empty": "succeeded",
        "enabled": "succeeded",
        "disabled": "errored",
        "bad": "errored",
        "value": "errored",
    }
    assert "thinking.type 'disabled'" in with_beta["disabled"].error.error.message
    assert with_beta["bad"].error.error.message.startswith("thinking.block_binding.mode:")
    assert "'error' or 'drop_block', not 'ignore'" in with_beta["value"].error.error.message
    # No binding check runs: nothing is dropped, so no input_transformations.
    message = with_beta["bound"].message
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.input_transformations is None


def _binding(behaviour: str = "drop_block") -> dict[str, Any]:
    return {"block_binding": {"prefix_mismatch_behavior": behaviour}}


def test_thinking_display(emulator: RunningEmulator) -> None:
    items = [
        request("omitted", thinking={"type": "adaptive", "display": "omitted"}),
        request("summarized", thinking={"type": "adaptive", "display": "summarized"}),
        request("updates", thinking={"type": "adaptive", "display": "updates"}),
        request("odd", thinking={"type": "adaptive", "display": "loud"}),
    ]
    plain = _results(emulator, items, [])
    assert plain["updates"].type == "errored"
    assert f"`{DISPLAY_UPDATES_BETA}`" in plain["updates"].error.error.message
    assert plain["odd"].type == "errored"
    assert plain["odd"].error.error.message.startswith("thinking.display: Input should be")
    omitted = plain["omitted"].message
    assert omitted.content[0].type == "thinking"
    assert omitted.content[0].thinking == ""
    assert omitted.content[0].signature
    # The thinking still happened and is still billed.
    assert omitted.usage.output_tokens_details.thinking_tokens > 0
    summarized = plain["summarized"].message.content[0]
    assert summarized.type == "thinking" and summarized.thinking
    with_beta = _results(emulator, items[2:3], [DISPLAY_UPDATES_BETA])
    assert with_beta["updates"].type == "succeeded"
    assert with_beta["updates"].message.content[0].thinking


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
def test_usage_reports_thinking_tokens_for_answers_with_thinking(
    emulator: RunningEmulator, version: str
) -> None:
    """``output_tokens_details`` needs no beta, under both versions; strict checks with the
    pinned SDK's (non-beta) types too."""
    items = [
        request("adaptive", thinking={"type": "adaptive"}),
        request("enabled", thinking={"type": "enabled", "budget_tokens": 1024}),
        request("plain"),
        request("short", thinking={"type": "adaptive"}, max_tokens=3),
    ]
    created = httpx.post(
        emulator.base_url + "/v1/messages/batches",
        json={"requests": items},
        headers={"x-api-key": emulator.api_key, "anthropic-version": version},
    )
    batch_id = created.json()["id"]
    emulator.wait_ended(batch_id)
    raw = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch_id}/results",
        headers={"x-api-key": emulator.api_key, "anthropic-version": version},
    )
    lines = {}
    for text in raw.text.splitlines():
        line = MessageBatchIndividualResponse.model_validate_json(text, strict=True)
        assert line.result.type == "succeeded"
        lines[line.custom_id] = line.result.message
    for name in ("adaptive", "enabled", "short"):
        message = lines[name]
        thinking = message.content[0]
        assert thinking.type == "thinking"
        details = message.usage.output_tokens_details
        assert details is not None
        assert details.thinking_tokens == len(thinking.thinking.split()), name
        assert 0 < details.thinking_tokens <= message.usage.output_tokens <= 1024
    assert lines["short"].usage.output_tokens == 3
    assert lines["short"].stop_reason == "max_tokens"
    assert lines["plain"].usage.output_tokens_details is None


def test_output_betas_raise_the_limit_for_unknown_models(emulator: RunningEmulator) -> None:
    emulator.configure(models=["claude-*", "future-model"])
    items = [request("big", model="future-model", max_tokens=300_000)]
    assert _results(emulator, items, [])["big"].type == "errored"
    assert _results(emulator, items, ["output-128k-2025-02-19"])["big"].type == "errored"
    assert _results(emulator, items, ["output-300k-2026-03-24"])["big"].type == "succeeded"


def test_the_docs_say_what_happens_to_each_beta() -> None:
    """docs/emulator.md's Betas section names every value under its handling, and only there."""
    text = (Path(__file__).parents[2] / "docs" / "emulator.md").read_text()
    section = text.split("\n## Betas\n", 1)[1].split("\n## ", 1)[0]
    parts = {
        "honoured": section.split("**Honoured**", 1)[1].split("**Ignored**", 1)[0],
        "ignored": section.split("**Ignored**", 1)[1].split("**Elsewhere**", 1)[0],
        "elsewhere": section.split("**Elsewhere**", 1)[1],
    }
    for name, beta in load_beta_table().betas.items():
        where = [h for h, part in parts.items() if f"`{name}`" in part]
        assert where == [beta.emulator], (name, where)

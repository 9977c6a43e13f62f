"""A model matrix staged in one pass (``_fanout``) is byte for byte the part-by-part staging:
the same staged file, fingerprint, shards, problems and sidecar, whatever the input holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.emulator.evalset import eval_requests
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Limits,
    ModelMatrix,
    Parts,
    RequestValidationError,
    RequestValidator,
    Sidecar,
    _fanout,
    envelope_parts,
    model_rules_check,
    records_from_items,
    records_from_jsonl,
    stage_requests,
)
from airflow_batches.jobs.prepare._sidecar import SIDECAR_FILE


class _Plain:
    """A part as any iterable: staged part by part, as before ``_fanout``."""

    def __init__(self, part: Any) -> None:
        self.part = part

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.part)


def _lines() -> list[str]:
    """Requests that exercise every way a copy can be encoded, refused or repeated."""
    out = []
    for i in range(30):
        params: dict[str, Any] = {
            "messages": [{"role": "user", "content": f'q{i} café "q" \\ \n \t \u2028 \x7f :a:'}]
        }
        if i % 3 == 0:
            params["temperature"] = [0.7, 1e-05, 1e16, 2.5e-07, 0.0001][i % 5]
        if i % 4 == 0:
            params["max_tokens"] = 100 + i
        if i % 5 == 0:
            params["model"] = "user-model"
        if i % 7 == 0:
            params["system"] = [{"type": "text", "text": "s \U0001f600"}]
        custom_id = f"q{i}" if i % 9 else ("L" * 62 + str(i))[-64:]
        request: dict[str, Any] = {"custom_id": custom_id, "params": params}
        if i % 2:
            request["metadata"] = {"n": i, "e": 1e-9}
        out.append(json.dumps(request))
    out[3] = '{"custom_id": "q3", "params": {"a": 1, "a": 2}}'  # a duplicate key
    out[4] = '{"custom_id": "q4", "params": [1]}'
    out[5] = "not json"
    out[6] = '{"custom_id": "bad id", "params": {"messages": []}}'
    out[8] = json.dumps(
        {"custom_id": "q1", "params": {"messages": [{"role": "user", "content": "x"}]}}
    )
    for at, cid, tokens in (
        (10, "q20", 40000),
        (11, "q20", 100),
        (12, "q21", 40000),
        (13, "q21", 40000),
    ):
        out[at] = json.dumps(
            {
                "custom_id": cid,
                "params": {"max_tokens": tokens, "messages": [{"role": "user", "content": "y"}]},
            }
        )
    return out


MODELS: list[Any] = [
    "claude-haiku-4-5",
    "claude-opus-4-1",  # 32,000 output tokens at most: refuses what the others accept
    {"model": "claude-sonnet-4-5", "label": "s", "params": {"max_tokens": 99, "top_k": 1e-05}},
]


def _stage(
    tmp_path: Path, name: str, lines: list[str], models: list[Any], one_pass: bool, **kw: Any
) -> tuple[Any, bytes, list[bytes], list[str]]:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    sidecar = Sidecar()
    parts = envelope_parts(
        lambda: records_from_jsonl(path.open("rb")), sidecar, ModelMatrix.of(models)
    )
    records = Parts(parts if one_pass else [_Plain(p) for p in parts])
    validator = RequestValidator(
        anthropic_version="2023-06-01",
        defaults={"max_tokens": 64},
        metadata=sidecar.metadata,
        limits=Limits(max_requests=7),
        checks=[model_rules_check(anthropic_version="2023-06-01")],
    )
    try:
        job, prepared = stage_requests(
            JobStore(tmp_path / name), records, validator, sidecar=sidecar, **kw
        )
    except RequestValidationError as exc:
        return None, b"", [], [str(exc)]
    side = job.path(SIDECAR_FILE)
    entries = sorted(side.read_bytes().splitlines()) if side.exists() else []
    return (
        prepared,
        job.path(REQUESTS_FILE).read_bytes(),
        entries,
        [str(p) for p in prepared.rejected],
    )


@pytest.mark.parametrize("on_invalid", ["skip", "fail"])
def test_one_pass_stages_what_the_parts_staged(tmp_path: Path, on_invalid: str) -> None:
    lines = _lines()
    one = _stage(tmp_path, "one", lines, MODELS, True, on_invalid=on_invalid)
    parts = _stage(tmp_path, "parts", lines, MODELS, False, on_invalid=on_invalid)
    assert one == parts
    if on_invalid == "skip":
        prepared, staged, sidecar, problems = one
        assert prepared.request_count > 0 and staged and sidecar
        assert any("is used by an earlier request" in p for p in problems)
        assert any("(claude-opus-4-1)" in p and "32000" in p for p in problems)
    else:
        assert "duplicate key" in one[3][0]


def test_valid_input_across_groups_of_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fanout, "GROUP", 2)  # 5 models: three passes over the input
    lines = [json.dumps(r) for r in eval_requests(25, seed=2)]
    models = [f"claude-haiku-4-{i}" for i in range(5)]
    one = _stage(tmp_path, "one", lines, models, True)
    assert one[0] is not None and one[0].request_count == 125
    assert one == _stage(tmp_path, "parts", lines, models, False)


def test_the_input_is_read_once_for_up_to_eight_models(tmp_path: Path) -> None:
    opened: list[int] = []

    def source() -> Any:
        opened.append(1)
        return records_from_items(
            {"custom_id": f"q{i}", "params": {"messages": [{"role": "user", "content": "x"}]}}
            for i in range(3)
        )

    validator = RequestValidator(anthropic_version="2023-06-01", defaults={"max_tokens": 8})
    models = [f"m-{i}" for i in range(10)]  # m0..m9: one prefix length, two groups
    _, prepared = stage_requests(
        JobStore(tmp_path), Parts(envelope_parts(source, None, ModelMatrix.of(models))), validator
    )
    assert prepared.request_count == 30
    assert len(opened) == 2


def test_fingerprints_are_those_of_the_release_before(tmp_path: Path) -> None:
    """A task retried across an upgrade finds its folder and its ledger: fingerprints of the
    same input must not change (these were computed by the part-by-part staging)."""
    path = tmp_path / "in.jsonl"
    with path.open("w") as out:
        for i, request in enumerate(eval_requests(20, seed=3)):
            if i == 3:
                request["params"]["temperature"] = 1e-05
            if i == 4:
                request["params"]["system"] = "café \u2028"
            out.write(json.dumps(request) + "\n")
    expected = {
        None: "98117804e05a5f5178272201f3d3cc4d612d980849ac7db848898d343c4b597c",
        "matrix": "582a32d7fadab505759a4a97c9cf9977dadf0c9a286c0f2a51f0dc52b79ad973",
    }
    matrix = [
        "claude-haiku-5-5",
        {"model": "claude-sonnet-5-5", "label": "s", "params": {"temperature": 0.5}},
        "claude-opus-5-5",
    ]
    for name, models in ((None, None), ("matrix", matrix)):
        sidecar = Sidecar()
        validator = RequestValidator(
            anthropic_version="2023-06-01",
            defaults={"max_tokens": 64},
            default_model="claude-haiku-5-5",
            metadata=sidecar.metadata,
            limits=Limits(max_requests=8),
        )
        source = lambda: records_from_jsonl(path.open("rb"))  # noqa: E731
        parts = envelope_parts(source, sidecar, ModelMatrix.of(models) if models else None)
        _, prepared = stage_requests(
            JobStore(tmp_path / "s"), Parts(parts), validator, sidecar=sidecar
        )
        assert prepared.fingerprint == expected[name]

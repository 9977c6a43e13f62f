"""The model matrix: derived custom_ids, one part per model, staging with a sidecar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api import CUSTOM_ID_PATTERN
from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    ModelMatrix,
    Parts,
    RequestValidationError,
    RequestValidator,
    Sidecar,
    envelope_parts,
    load_sidecar,
    original_key,
    records_from_jsonl,
    stage_requests,
)
from airflow_batches.jobs.prepare._matrix import request_key
from airflow_batches.jobs.prepare._sidecar import SIDECAR_FILE

VALIDATOR = RequestValidator(anthropic_version="2023-06-01", defaults={"max_tokens": 8})


def request(custom_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"messages": [{"role": "user", "content": f"hi {custom_id}"}]},
        **extra,
    }


def test_custom_ids_are_prefixed_and_always_fit() -> None:
    matrix = ModelMatrix.of([f"model-{i}" for i in range(12)])
    first, eleventh = matrix.models[0], matrix.models[11]
    assert matrix.custom_id(first, "q1") == "m0_q1"
    longest = "x" * 64
    for model in (first, eleventh):
        derived = matrix.custom_id(model, longest)
        assert re.fullmatch(CUSTOM_ID_PATTERN, derived) and len(derived) <= 64
        assert matrix.split(derived) == (model, request_key(longest, len(model.prefix)))
    # The key after the prefix is the same for every model, and is deterministic.
    assert matrix.custom_id(first, longest)[3:] == matrix.custom_id(eleventh, longest)[4:]
    assert request_key("y" * 64, 2) != request_key("y" * 63 + "z", 2)
    assert matrix.custom_id(first, "a" * 61) == "m0_" + "a" * 61  # 64: still fits as is
    assert matrix.split("q1") is None and matrix.split("m99_q1") is None


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([], "at least one"),
        ("claude-haiku-4-5", "a list"),
        (["a", "a"], "label 'a' is used twice"),
        ([{"model": "a", "params": {"model": "b"}}], "give the model as models"),
        ([{"model": "a", "temperature": 0}], "unknown key"),
        ([{"label": "x"}], r"models\[0\].model"),
        (["a", {"model": "b", "label": "x" * 129}], r"models\[1\].label is 129 .* at most 128"),
    ],
)
def test_bad_matrices_are_refused_naming_the_entry(models: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelMatrix.of(models)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("GPT 4", "GPT/4"),  # punctuation and spaces fold to "_"
        ("haiku", "Haiku"),  # one file on storage that ignores case
        ("claude:a", "claude+a"),
        ("modèle", "mod_le"),  # letters outside ASCII fold too
    ],
)
def test_labels_that_would_share_a_file_are_refused_naming_both(first: str, second: str) -> None:
    models = ["z", {"model": "a", "label": first}, {"model": "b", "label": second}]
    with pytest.raises(ValueError, match="share one file name") as caught:
        ModelMatrix.of(models)
    assert str(caught.value).startswith(f"models[2]: label {second!r} and models[1]'s {first!r}")


def test_labels_that_differ_keep_readable_file_names() -> None:
    from airflow_batches.jobs._store import file_name, name_clash

    labels = ["claude-haiku-4-5", "claude-haiku-4-5 thinking", "sonnet.v2"]
    ModelMatrix.of([{"model": "m", "label": label} for label in labels])
    assert [file_name(f"results.{x}") for x in labels] == [
        "results.claude-haiku-4-5.jsonl",
        "results.claude-haiku-4-5_thinking.jsonl",
        "results.sonnet.v2.jsonl",
    ]
    assert name_clash(labels) is None
    assert name_clash(["a b", "x", "A_B"]) == ("a b", "A_B", "A_B.jsonl")


def test_path_parts_are_safe_and_never_shared() -> None:
    from airflow_batches.jobs._store import path_part

    assert path_part("nightly_eval") == "nightly_eval"
    assert path_part("scheduled__2026-12-06") == "scheduled__2026-12-06"
    hostile = ["a:b", "a+b", "a_b", "..", ".", "", "a/b", "a/../b", "/etc", "é", "\udcff"]
    parts = [path_part(x) for x in hostile]
    assert len(set(parts)) == len(parts)
    for part in parts:
        assert "/" not in part and part.strip(".") and part.isascii()
    assert path_part("a:b").startswith("a_b-") and path_part("..").startswith("..-")


def test_the_same_model_twice_with_its_own_params() -> None:
    matrix = ModelMatrix.of(
        [
            "claude-sonnet-4-5",
            {"model": "claude-sonnet-4-5", "label": "sonnet-long", "params": {"max_tokens": 99}},
        ]
    )
    assert ModelMatrix.from_json(matrix.to_json()).to_json() == matrix.to_json()
    expanded, original = matrix.expand(matrix.models[1], request("q", model="ignored"))
    assert original == "q"
    assert expanded["custom_id"] == "m1_q"
    assert expanded["params"]["model"] == "claude-sonnet-4-5"
    assert expanded["params"]["max_tokens"] == 99
    assert expanded["model"] == "ignored"  # an unknown member is kept: pre-flight refuses it


def test_staging_a_matrix_gives_each_model_its_own_shards(tmp_path: Path) -> None:
    matrix = ModelMatrix.of(["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"])
    items = [request(f"q{i}", metadata={"n": i}) for i in range(5)]
    items.append(request("L" * 64, metadata={"n": "long"}))
    sidecar = Sidecar()
    opened = []

    def source() -> Any:
        opened.append(1)
        return iter([(f"request {i}", item) for i, item in enumerate(items)])

    segments = Parts(envelope_parts(source, sidecar, matrix))
    limits_validator = RequestValidator(
        anthropic_version="2023-06-01",
        defaults={"max_tokens": 8},
        limits=VALIDATOR.limits.__class__(max_requests=4),
        metadata=sidecar.metadata,
    )
    job, prepared = stage_requests(JobStore(tmp_path), segments, limits_validator, sidecar=sidecar)
    assert len(opened) == 1  # the input is read once, for up to eight models (_fanout)
    assert prepared.request_count == 18
    # 6 requests per model, 4 per batch: 2 shards per model, never two models in one.
    assert [(s.first, s.count) for s in prepared.shards] == [
        (0, 4),
        (4, 2),
        (6, 4),
        (10, 2),
        (12, 4),
        (16, 2),
    ]
    staged = [json.loads(x) for x in job.path(REQUESTS_FILE).read_bytes().splitlines()]
    for shard in prepared.shards:
        models = {r["params"]["model"] for r in staged[shard.first : shard.first + shard.count]}
        assert len(models) == 1
    raw = job.path(REQUESTS_FILE).read_bytes()
    for shard in prepared.shards:
        chunk = raw[shard.offset : shard.offset + shard.length].splitlines()
        assert len(chunk) == shard.count
    assert all("metadata" not in r for r in staged)
    assert all(len(r["custom_id"]) <= 64 for r in staged)
    with DiskIndex() as index:
        # Each copy's metadata, and the one custom_id that was shortened (told once).
        assert load_sidecar(job.path(SIDECAR_FILE), index) == 18 + 1
        long_key = request_key("L" * 64, 2)
        assert index.get(original_key(long_key)) == b"L" * 64
        assert json.loads(index.get("m2_q3") or b"") == {"n": 3}
        assert json.loads(index.get(f"m1_{long_key}") or b"") == {"n": "long"}
    # The metadata entries come in the order of the staged requests (model by model), the
    # order of the batches' results: the fetch reads them alongside, never spilled to disk.
    entries = [json.loads(x) for x in job.path(SIDECAR_FILE).read_bytes().splitlines()]
    assert [e["id"] for e in entries if "id" in e] == [r["custom_id"] for r in staged]


def test_a_matrix_over_a_jsonl_file_and_pre_flight_still_strict(tmp_path: Path) -> None:
    lines = [
        json.dumps(request("ok", metadata={"expected": 1})),
        json.dumps(request("stray", extra_member=True, metadata={})),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")

    def source() -> Any:
        return records_from_jsonl(path.open("rb"))

    matrix = ModelMatrix.of(["claude-haiku-4-5", "claude-sonnet-4-5"])
    sidecar = Sidecar()
    validator = RequestValidator(
        anthropic_version="2023-06-01", defaults={"max_tokens": 8}, metadata=sidecar.metadata
    )
    with pytest.raises(RequestValidationError) as caught:
        stage_requests(
            JobStore(tmp_path / "job"),
            Parts(envelope_parts(source, sidecar, matrix)),
            validator,
            sidecar=sidecar,
        )
    assert "line 2 (claude-haiku-4-5) (custom_id 'm0_stray'): extra_member: unknown field" in str(
        caught.value
    )

"""The metadata envelope: peeled off before pre-flight, never sent, pre-flight still strict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._matrix import envelope_segments
from airflow_batches.jobs._metadata import (
    SIDECAR_FILE,
    Sidecar,
    load_sidecar,
    split_metadata,
    unpack,
)
from airflow_batches.jobs._prepare import (
    RequestValidationError,
    RequestValidator,
    records_from_items,
)
from airflow_batches.jobs._staging import REQUESTS_FILE, Segments, stage_requests
from airflow_batches.jobs._store import JobStore

VALIDATOR = RequestValidator(anthropic_version="2023-06-01", default_model="claude-haiku-4-5")
PARAMS = {"max_tokens": 4, "messages": [{"role": "user", "content": "q"}]}


def stage(tmp_path: Path, records: list[tuple[str, Any]]) -> tuple[JobStore, Sidecar]:
    sidecar = Sidecar()
    segments = Segments(envelope_segments(lambda: iter(records), sidecar))
    job, _ = stage_requests(JobStore(tmp_path), segments, VALIDATOR, sidecar=sidecar)
    return job, sidecar


@pytest.mark.parametrize(
    "raw",
    [
        {"custom_id": "a", "params": PARAMS, "metadata": {"expected": [1, 2]}},
        json.dumps({"custom_id": "a", "metadata": {"expected": [1, 2]}, "params": PARAMS}).encode(),
    ],
)
def test_metadata_is_split_from_a_dict_or_a_jsonl_line(raw: Any) -> None:
    request, metadata = split_metadata(raw)
    assert dict(request) == {"custom_id": "a", "params": PARAMS}
    assert json.loads(metadata or b"") == {"expected": [1, 2]}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"custom_id": "a", "params": {"metadata": {"user_id": "u"}}}',  # the API's own
        b'{"custom_id": "a", "metadata": ',  # broken: pre-flight names it
        {"custom_id": "a", "params": {}},
        b"[1, 2]",
    ],
)
def test_anything_without_a_top_level_metadata_is_handed_on_as_it_is(raw: Any) -> None:
    assert split_metadata(raw) == (raw, None)


def test_requests_with_metadata_are_staged_without_it(tmp_path: Path) -> None:
    records = [
        ("line 1", json.dumps({"custom_id": "a", "params": PARAMS, "metadata": "x"}).encode()),
        ("request 1", {"custom_id": "b", "params": PARAMS, "metadata": {"k": None}}),
        ("request 2", {"custom_id": "c", "params": PARAMS}),
    ]
    job, sidecar = stage(tmp_path, records)
    staged = [json.loads(x) for x in job.path(REQUESTS_FILE).read_bytes().splitlines()]
    assert [set(r) for r in staged] == [{"custom_id", "params"}] * 3
    assert (sidecar.count, sidecar.with_metadata) == (2, 2)
    with DiskIndex() as index:
        load_sidecar(job.path(SIDECAR_FILE), index)
        assert unpack(index.get("a")).metadata == b'"x"'
        assert unpack(index.get("b")).metadata == b'{"k":null}'
        assert index.get("c") is None


def test_pre_flight_still_refuses_any_other_unknown_member(tmp_path: Path) -> None:
    records = list(
        records_from_items(
            [
                {"custom_id": "a", "params": PARAMS, "metadata": {}, "tags": ["x"]},
                {"custom_id": "b", "params": PARAMS, "meta": {}},
            ]
        )
    )
    with pytest.raises(RequestValidationError) as caught:
        stage(tmp_path, records)
    problems = {(p["custom_id"], p["field"]) for p in caught.value.problems}
    assert problems == {("a", "tags"), ("b", "meta")}  # metadata itself is never a problem
    assert not list(tmp_path.glob("**/" + SIDECAR_FILE))


def test_metadata_that_is_not_json_is_named(tmp_path: Path) -> None:
    records = [("request 0", {"custom_id": "a", "params": PARAMS, "metadata": object()})]
    with pytest.raises(RequestValidationError, match=r"request 0 \(custom_id 'a'\): metadata: not"):
        stage(tmp_path, records)

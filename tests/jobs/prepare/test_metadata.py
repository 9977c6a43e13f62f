"""The metadata envelope: accepted by pre-flight, never sent, pre-flight still strict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    RequestValidationError,
    RequestValidator,
    Sidecar,
    load_sidecar,
    records_from_items,
    stage_requests,
)
from airflow_batches.jobs.prepare._sidecar import SIDECAR_FILE

PARAMS = {"max_tokens": 4, "messages": [{"role": "user", "content": "q"}]}


def stage(tmp_path: Path, records: list[tuple[str, Any]], **kw: Any) -> tuple[JobStore, Sidecar]:
    sidecar = Sidecar()
    validator = RequestValidator(
        anthropic_version="2023-06-01",
        default_model="claude-haiku-4-5",
        metadata=sidecar.metadata,
        **kw,
    )
    job, _ = stage_requests(JobStore(tmp_path), records, validator, sidecar=sidecar)
    return job, sidecar


def test_requests_with_metadata_are_staged_without_it(tmp_path: Path) -> None:
    params = b'{"model": "m", "max_tokens": 4,  "messages": [{"role": "user", "content": "q"}]}'
    line = b'{"custom_id": "a", "metadata": {"expected": [1, 2.50]}, "params": ' + params + b"}"
    records = [
        ("line 1", line),
        ("request 1", {"custom_id": "b", "params": PARAMS, "metadata": {"k": None}}),
        ("request 2", {"custom_id": "c", "params": PARAMS}),
        ("request 3", {"custom_id": "d", "params": PARAMS, "metadata": "just text"}),
    ]
    job, sidecar = stage(tmp_path, records)
    staged = job.path(REQUESTS_FILE).read_bytes().splitlines()
    # The user's own bytes of custom_id and params; the metadata member is gone.
    assert staged[0] == b'{"custom_id":"a","params":' + params + b"}"
    assert [set(json.loads(x)) for x in staged] == [{"custom_id", "params"}] * 4
    assert (sidecar.count, sidecar.with_metadata) == (3, 3)
    with DiskIndex() as index:
        load_sidecar(job.path(SIDECAR_FILE), index)
        assert json.loads(index.get("a") or b"") == {"expected": [1, 2.5]}
        assert index.get("b") == b'{"k":null}'
        assert index.get("c") is None
        assert index.get("d") == b'"just text"'


def test_a_line_without_metadata_is_still_sent_byte_for_byte(tmp_path: Path) -> None:
    line = b'{"custom_id": "a",  "params": {"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": "u"}}}'  # noqa: E501
    job, sidecar = stage(tmp_path, [("line 1", line)])
    # params.metadata is the API's own: sent as it is; nothing goes to the sidecar.
    assert job.path(REQUESTS_FILE).read_bytes() == line + b"\n"
    assert sidecar.count == 0 and not job.path(SIDECAR_FILE).exists()


def test_pre_flight_still_refuses_any_other_unknown_member(tmp_path: Path) -> None:
    records = list(
        records_from_items(
            [
                {"custom_id": "a", "params": PARAMS, "metadata": {}, "tags": ["x"]},
                {"custom_id": "b", "params": PARAMS, "meta": {}},
                {"custom_id": "c", "params": PARAMS, "metadata": {"x": object()}},
            ]
        )
    )
    with pytest.raises(RequestValidationError) as caught:
        stage(tmp_path, records)
    problems = {(p["custom_id"], p["field"]) for p in caught.value.problems}
    assert problems == {("a", "tags"), ("b", "meta"), ("c", "metadata.x")}
    assert "unknown field (a request is {custom_id, params, metadata})" in str(caught.value)
    assert not list(tmp_path.glob("**/" + SIDECAR_FILE))


def test_a_duplicate_key_is_caught_in_a_line_with_metadata(tmp_path: Path) -> None:
    line = b'{"custom_id": "a", "params": {"max_tokens": 4, "max_tokens": 5, "messages": [{"role": "user", "content": "q"}]}, "metadata": 1}'  # noqa: E501
    with pytest.raises(RequestValidationError, match="max_tokens"):
        stage(tmp_path, [("line 1", line)])


def test_without_a_sink_metadata_is_an_unknown_member(tmp_path: Path) -> None:
    validator = RequestValidator(anthropic_version="2023-06-01", default_model="m")
    records = list(records_from_items([{"custom_id": "a", "params": PARAMS, "metadata": 1}]))
    with pytest.raises(RequestValidationError, match="metadata: unknown field"):
        stage_requests(JobStore(tmp_path), records, validator)

"""One table of request shapes, every caller's verdict on each.

The shape of a request is defined once (``api._request_shape``) and rendered by four callers:
pre-flight (``RequestValidator``, for in-memory requests and for JSONL lines), the wire models
(``BatchRequest``), the emulator's create call (``intake.scan_body``, a 400) and its
processing (``validation.validate_params``, an errored line). Each case says which field is at
fault (or that the request is valid) and whether the client refuses it too; every caller must
agree, and name that field in its own words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest

from airflow_batches.api import BatchRequest
from airflow_batches.api._request_shape import (
    CLIENT_CHECKS,
    PARAMS_CHECKS,
    SDK_ONLY_KEYS,
    FieldPath,
    api_path,
    field_path,
    params_faults,
    request_faults,
)
from airflow_batches.emulator.errors import APIError
from airflow_batches.emulator.intake import scan_body
from airflow_batches.emulator.store import BatchFiles
from airflow_batches.emulator.validation import validate_params
from airflow_batches.jobs.prepare import RequestValidator

V1 = "2023-06-01"
V2 = "2026-10-21"
PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hello"}],
}
_ABSENT = object()


def item(custom_id: Any = "req-1", **params: Any) -> dict[str, Any]:
    """A valid request, with ``params`` members replaced (or removed, given ``_ABSENT``)."""
    merged = {**PARAMS, **params}
    return {"custom_id": custom_id, "params": {k: v for k, v in merged.items() if v is not _ABSENT}}


def message(**fields: Any) -> dict[str, Any]:
    return item(
        messages=[{k: v for k, v in {"role": "user", **fields}.items() if v is not _ABSENT}]
    )


@dataclass(frozen=True)
class Case:
    id: str
    request: Any
    fault: FieldPath | None
    """The first field at fault, from the request down; None: a valid request."""
    client: bool = True
    """Whether the client (``BatchRequest``) refuses it too (``CLIENT_CHECKS``)."""
    version: str = V1


def without(key: str) -> dict[str, Any]:
    request = item()
    del request[key]
    return request


CASES = [
    Case("valid", item(), None),
    Case("stream false", item(stream=False), None),
    Case("content blocks", message(content=[{"type": "text", "text": "Hi"}]), None),
    Case("temperature under the old version", item(temperature=0.5), None),
    Case("not an object", ["a list"], ()),
    Case("custom_id missing", without("custom_id"), ("custom_id",)),
    Case("custom_id null", item(None), ("custom_id",)),
    Case("custom_id a number", item(7), ("custom_id",)),
    Case("custom_id empty", item(""), ("custom_id",)),
    Case("custom_id too long", item("x" * 65), ("custom_id",)),
    Case("custom_id with a space", item("a b"), ("custom_id",)),
    Case("custom_id ending in a newline", item("abc\n"), ("custom_id",)),
    Case("custom_id non-ASCII", item("café"), ("custom_id",)),
    Case("an unknown member", {**item(), "metadata": {}}, ("metadata",)),
    Case("params missing", without("params"), ("params",)),
    Case("params a list", {"custom_id": "a", "params": []}, ("params",)),
    Case("model missing", item(model=_ABSENT), ("params", "model")),
    Case("model empty", item(model=""), ("params", "model")),
    Case("model a number", item(model=7), ("params", "model")),
    Case("max_tokens missing", item(max_tokens=_ABSENT), ("params", "max_tokens")),
    Case("max_tokens null", item(max_tokens=None), ("params", "max_tokens")),
    Case("max_tokens 0", item(max_tokens=0), ("params", "max_tokens")),
    Case("max_tokens negative", item(max_tokens=-1), ("params", "max_tokens")),
    Case("max_tokens a string", item(max_tokens="16"), ("params", "max_tokens")),
    Case("max_tokens a float", item(max_tokens=16.0), ("params", "max_tokens")),
    Case("max_tokens a boolean", item(max_tokens=True), ("params", "max_tokens")),
    Case("messages missing", item(messages=_ABSENT), ("params", "messages")),
    Case("messages an object", item(messages={}), ("params", "messages")),
    Case("messages empty", item(messages=[]), ("params", "messages"), client=False),
    Case("a message not an object", item(messages=["hi"]), ("params", "messages", 0)),
    Case("role missing", message(role=_ABSENT), ("params", "messages", 0, "role"), False),
    Case("role system", message(role="system"), ("params", "messages", 0, "role"), False),
    Case("role robot", message(role="robot"), ("params", "messages", 0, "role"), False),
    Case("content missing", message(), ("params", "messages", 0, "content"), False),
    Case("content a number", message(content=5), ("params", "messages", 0, "content"), False),
    Case("content an object", message(content={}), ("params", "messages", 0, "content"), False),
    Case("stream true", item(stream=True), ("params", "stream")),
    Case("stream 1", item(stream=1), ("params", "stream")),
    Case("stream null", item(stream=None), ("params", "stream")),
    *(Case(f"SDK option {k}", item(**{k: {}}), ("params", k)) for k in sorted(SDK_ONLY_KEYS)),
    Case("temperature removed", item(temperature=0.5), ("params", "temperature"), False, V2),
    Case("the first of several", item(model="", stream=True), ("params", "model")),
]


def ids(case: Case) -> str:
    return case.id


def test_the_table_covers_every_check() -> None:
    def fails(name: str, case: Case) -> bool:
        params = case.request["params"] if not request_faults(case.request) else {}
        return bool(params and params_faults(params, checks=[name]))

    for name in PARAMS_CHECKS:
        assert any(fails(name, case) for case in CASES), f"no case fails the {name!r} check"
        assert any(fails(name, c) and c.client == (name in CLIENT_CHECKS) for c in CASES), name


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_the_shape(case: Case) -> None:
    faults = request_faults(case.request)
    if not faults:
        faults = params_faults(
            case.request["params"], anthropic_version=case.version, at=("params",)
        )
    assert (faults[0].path if faults else None) == case.fault


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("as_line", [False, True], ids=["in memory", "JSONL"])
def test_pre_flight(case: Case, as_line: bool) -> None:
    validator = RequestValidator(anthropic_version=case.version)
    raw = json.dumps(case.request).encode() if as_line else case.request
    verdict = validator.check("line 2", raw)
    if case.fault is None:
        assert isinstance(verdict, tuple), verdict
        return
    assert isinstance(verdict, list) and verdict, verdict
    assert verdict[0].field == field_path(case.fault)
    shown = str(verdict[0])
    assert shown.startswith("line 2") and f": {field_path(case.fault)}: " in shown
    if case.fault[:1] == ("params",) and len(case.fault) > 1:
        assert shown.startswith("line 2 (custom_id 'req-1'): ")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_the_wire_models(case: Case) -> None:
    if case.fault is None or not case.client:
        BatchRequest.model_validate(case.request)
        return
    with pytest.raises(pydantic.ValidationError) as caught:
        BatchRequest.model_validate(case.request)
    named = [part for part in case.fault if isinstance(part, str)]
    if named:
        assert named[-1] in str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_the_emulator(case: Case, tmp_path: Path) -> None:
    files = BatchFiles(tmp_path)
    files.body.write_text(json.dumps({"requests": [case.request]}))
    if case.fault is not None and len(case.fault) < 2:  # the envelope: the create call's 400
        with pytest.raises(APIError) as caught:
            scan_body(files, max_requests=10, too_many_error="invalid_request_error")
        assert caught.value.status == 400
        assert caught.value.message.startswith(f"{api_path(('requests', 0, *case.fault))}: ")
        return
    assert scan_body(files, max_requests=10, too_many_error="invalid_request_error") == 1
    error = validate_params(
        case.request["params"],
        api_version=case.version,
        betas=(),
        user_profile_id=None,
        models=("claude-*",),
        max_output_tokens=64_000,
    )
    if case.fault is None:
        assert error is None
        return
    assert error is not None and error.error_type == "invalid_request_error"
    assert error.message.startswith(f"{api_path(case.fault[1:])}: ")


def test_paths_are_written_two_ways() -> None:
    path = ("params", "messages", 3, "role")
    assert field_path(path) == "params.messages[3].role"
    assert api_path(path) == "params.messages.3.role"
    assert field_path(("params", "a b")) == "params['a b']"
    assert field_path(()) == "(request)"

"""The official SDK, unchanged, against the emulator; every raw answer checked strictly.

The SDK builds its objects without validating them, so each raw JSON body is also validated
with the SDK's own pydantic types in strict mode.
"""

from __future__ import annotations

import asyncio

import anthropic
import httpx
import pytest
from anthropic.pagination import AsyncPage, SyncPage
from anthropic.types.messages import (
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchIndividualResponse,
)
from anthropic.types.shared import ErrorResponse

from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import MODEL, request, requests

pytestmark = pytest.mark.anyio


def strict_batch(raw: bytes) -> MessageBatch:
    return MessageBatch.model_validate_json(raw, strict=True)


def strict_error(response: httpx.Response) -> ErrorResponse:
    assert response.headers["request-id"].startswith("req_")
    error = ErrorResponse.model_validate_json(response.content, strict=True)
    assert error.request_id == response.headers["request-id"]
    return error


def test_full_cycle_sync(emulator: RunningEmulator, sdk: anthropic.Anthropic) -> None:
    raw = sdk.messages.batches.with_raw_response.create(requests=requests(5))
    assert raw.http_response.status_code == 200
    assert raw.http_response.headers["request-id"].startswith("req_")
    created = strict_batch(raw.http_response.content)
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == 5
    assert created.results_url is None
    assert created.ended_at is None
    assert (created.expires_at - created.created_at).total_seconds() == pytest.approx(86400)
    assert raw.parse().id == created.id

    emulator.wait_ended(created.id)
    retrieved = strict_batch(
        sdk.messages.batches.with_raw_response.retrieve(created.id).http_response.content
    )
    assert retrieved.processing_status == "ended"
    assert retrieved.request_counts.succeeded == 5
    assert retrieved.request_counts.processing == 0
    assert retrieved.results_url == (
        f"{emulator.base_url}/v1/messages/batches/{created.id}/results"
    )
    assert retrieved.ended_at is not None

    lines = []
    for line in sdk.messages.batches.results(created.id):
        assert line.result.type == "succeeded"
        assert line.result.message.model == MODEL
        lines.append(line.custom_id)
    assert sorted(lines) == sorted(f"req-{i}" for i in range(5))

    listed = sdk.messages.batches.with_raw_response.list(limit=10).http_response
    page = SyncPage[MessageBatch].model_validate_json(listed.content, strict=True)
    assert page.has_more is False
    assert page.first_id == page.last_id == created.id
    assert [b.id for b in page.data] == [created.id]

    deleted = sdk.messages.batches.with_raw_response.delete(created.id).http_response
    assert DeletedMessageBatch.model_validate_json(deleted.content, strict=True).id == created.id
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(created.id)


def test_results_raw_lines_are_strict_jsonl(
    emulator: RunningEmulator, sdk: anthropic.Anthropic
) -> None:
    batch = sdk.messages.batches.create(
        requests=[
            *requests(3),
            request("bad-model", model="no-such-model"),
            request("no-max", max_tokens=0),
        ]
    )
    emulator.wait_ended(batch.id)
    batch = sdk.messages.batches.retrieve(batch.id)
    assert batch.results_url is not None
    response = httpx.get(
        batch.results_url,
        headers={
            "authorization": f"Bearer {emulator.api_key}",
            "anthropic-version": "2026-10-21",
            "accept": "application/binary",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-jsonl"
    assert response.headers["request-id"].startswith("req_")
    text = response.text
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(line.strip() for line in lines)
    parsed = {}
    for line in lines:
        item = MessageBatchIndividualResponse.model_validate_json(line, strict=True)
        parsed[item.custom_id] = item.result
    assert parsed["bad-model"].type == "errored"
    assert parsed["bad-model"].error.error.type == "not_found_error"
    assert parsed["bad-model"].error.error.message == "model: no-such-model"
    assert parsed["no-max"].type == "errored"
    assert parsed["no-max"].error.error.type == "invalid_request_error"
    assert "max_tokens" in parsed["no-max"].error.error.message
    assert sum(r.type == "succeeded" for r in parsed.values()) == 3


async def test_full_cycle_async(emulator: RunningEmulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0
    ) as sdk:
        batches = sdk.messages.batches
        raw = await batches.with_raw_response.create(requests=requests(4))
        created = strict_batch(raw.http_response.content)
        assert created.processing_status == "in_progress"
        for _ in range(250):
            got = await batches.with_raw_response.retrieve(created.id)
            batch = strict_batch(got.http_response.content)
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(0.02)
        assert batch.processing_status == "ended"
        assert batch.request_counts.succeeded == 4

        seen = [line async for line in await batches.results(created.id)]
        assert sorted(line.custom_id for line in seen) == [f"req-{i}" for i in range(4)]
        async with httpx.AsyncClient() as http:
            results = await http.get(
                batch.results_url or "",
                headers={
                    "authorization": f"Bearer {emulator.api_key}",
                    "anthropic-version": "2026-10-21",
                },
            )
        for line in results.text.splitlines():
            MessageBatchIndividualResponse.model_validate_json(line, strict=True)

        listed = await batches.with_raw_response.list(limit=1)
        page = AsyncPage[MessageBatch].model_validate_json(
            listed.http_response.content, strict=True
        )
        assert [b.id for b in page.data] == [created.id]
        assert [b.id async for b in batches.list(limit=1)] == [created.id]

        emulator.configure(paused=True)
        waiting = (await batches.create(requests=requests(2))).id
        canceled = await batches.with_raw_response.cancel(waiting)
        assert strict_batch(canceled.http_response.content).processing_status == "canceling"
        with pytest.raises(anthropic.BadRequestError, match="already ended"):
            await batches.cancel(created.id)

        deleted = await batches.with_raw_response.delete(created.id)
        strict = DeletedMessageBatch.model_validate_json(deleted.http_response.content, strict=True)
        assert strict.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            await batches.retrieve(created.id)


def test_cancel_sync(emulator: RunningEmulator, sdk: anthropic.Anthropic) -> None:
    emulator.configure(paused=True)
    batch = sdk.messages.batches.create(requests=requests(3))
    raw = sdk.messages.batches.with_raw_response.cancel(batch.id).http_response
    canceling = strict_batch(raw.content)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    emulator.wait_ended(batch.id)
    ended = strict_batch(
        sdk.messages.batches.with_raw_response.retrieve(batch.id).http_response.content
    )
    assert ended.request_counts.canceled == 3
    assert [r.result.type for r in sdk.messages.batches.results(batch.id)] == ["canceled"] * 3


def test_errors_have_the_api_shape(emulator: RunningEmulator) -> None:
    base = emulator.base_url + "/v1/messages/batches"
    ok = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}

    no_key = httpx.get(base, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401
    assert strict_error(no_key).error.type == "authentication_error"

    bad_key = httpx.get(base, headers={**ok, "x-api-key": "nope"})
    assert bad_key.status_code == 401

    missing = httpx.get(base + "/msgbatch_missing", headers=ok)
    assert missing.status_code == 404
    assert strict_error(missing).error.type == "not_found_error"

    bad_limit = httpx.get(base, params={"limit": 0}, headers=ok)
    assert bad_limit.status_code == 400
    assert strict_error(bad_limit).error.type == "invalid_request_error"

    unknown_path = httpx.get(emulator.base_url + "/v1/nothing", headers=ok)
    assert unknown_path.status_code == 404
    strict_error(unknown_path)

    with (
        anthropic.Anthropic(api_key="wrong", base_url=emulator.base_url, max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError),
    ):
        sdk.messages.batches.list()


def test_beta_namespace_and_query_are_accepted(
    emulator: RunningEmulator, sdk: anthropic.Anthropic
) -> None:
    batch = sdk.beta.messages.batches.create(
        requests=requests(2), betas=["message-batches-2024-09-24"]
    )
    emulator.wait_ended(batch.id)
    response = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch.id}?beta=true",
        headers={
            "x-api-key": emulator.api_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "message-batches-2024-09-24",
        },
    )
    assert strict_batch(response.content).processing_status == "ended"
    lines = list(sdk.beta.messages.batches.results(batch.id))
    assert len(lines) == 2

    unknown_beta = httpx.get(
        f"{emulator.base_url}/v1/messages/batches",
        headers={
            "x-api-key": emulator.api_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "made-up-2099-01-01",
        },
    )
    assert unknown_beta.status_code == 400


def test_pagination_both_directions(emulator: RunningEmulator, sdk: anthropic.Anthropic) -> None:
    emulator.configure(paused=True)
    ids = [sdk.messages.batches.create(requests=requests(1)).id for _ in range(5)]
    newest_first = list(reversed(ids))

    assert [b.id for b in sdk.messages.batches.list(limit=2)] == newest_first
    first = sdk.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2]
    assert first.has_more is True
    assert first.first_id == newest_first[0]
    assert first.last_id == newest_first[1]

    older = sdk.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in older.data] == newest_first[2:4]
    newer = sdk.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [b.id for b in newer.data] == newest_first[1:3]
    assert newer.has_more is True
    last = sdk.messages.batches.list(limit=2, before_id=newest_first[1])
    assert [b.id for b in last.data] == newest_first[:1]
    assert last.has_more is False


def test_version_headers(emulator: RunningEmulator) -> None:
    url = emulator.base_url + "/v1/messages/batches"
    for version in ("2023-06-01", "2026-10-21"):
        ok = httpx.get(url, headers={"x-api-key": emulator.api_key, "anthropic-version": version})
        assert ok.status_code == 200, version
    bad = httpx.get(url, headers={"x-api-key": emulator.api_key, "anthropic-version": "1999"})
    assert bad.status_code == 400
    assert "anthropic-version" in strict_error(bad).error.message
    none = httpx.get(url, headers={"x-api-key": emulator.api_key})
    assert none.status_code == 400


def test_removed_params_error_under_new_version_only(
    emulator: RunningEmulator, sdk: anthropic.Anthropic
) -> None:
    body = {"requests": [request("t", temperature=0.5), request("k", top_k=3), request("ok")]}
    results = {}
    for version in ("2023-06-01", "2026-10-21"):
        created = httpx.post(
            emulator.base_url + "/v1/messages/batches",
            json=body,
            headers={"x-api-key": emulator.api_key, "anthropic-version": version},
        )
        assert created.status_code == 200
        batch_id = created.json()["id"]
        emulator.wait_ended(batch_id)
        results[version] = {
            line.custom_id: line.result for line in sdk.messages.batches.results(batch_id)
        }
    assert {r.type for r in results["2023-06-01"].values()} == {"succeeded"}
    new = results["2026-10-21"]
    assert new["ok"].type == "succeeded"
    for custom_id, field in (("t", "temperature"), ("k", "top_k")):
        result = new[custom_id]
        assert result.type == "errored"
        assert result.error.error.type == "invalid_request_error"
        assert field in result.error.error.message
        assert "2026-10-21" in result.error.error.message

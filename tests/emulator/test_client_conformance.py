"""Our own client (sync and async) against the served emulator."""

from __future__ import annotations

import json

import pytest

from airflow_batches.api import (
    AsyncClient,
    BadRequestError,
    Client,
    MessageBatch,
    NotFoundError,
    RequestTooLargeError,
    ResultsNotReadyError,
    iter_create_body,
)
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import request, requests

pytestmark = pytest.mark.anyio


def test_every_operation_sync(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(20))
    assert isinstance(batch, MessageBatch)
    assert batch.request_counts.processing == 20
    with pytest.raises(ResultsNotReadyError):
        list(client.results(batch))

    emulator.wait_ended(batch.id)
    ended = client.retrieve(batch.id)
    assert ended.is_ended
    assert ended.request_counts.succeeded == 20
    assert ended.request_counts.total == 20

    results = list(client.results(ended))
    assert sorted(r.custom_id for r in results) == sorted(f"req-{i}" for i in range(20))
    assert all(r.result.type == "succeeded" for r in results)
    raw_lines = list(client.iter_result_lines(ended.id))
    assert len(raw_lines) == 20
    # Results must not come back in input order (the API does not promise it).
    assert [json.loads(line)["custom_id"] for line in raw_lines] != [f"req-{i}" for i in range(20)]

    assert [b.id for b in client.list()] == [batch.id]
    page = client.list_page(limit=1)
    assert page.has_more is False
    assert page.first_id == batch.id

    deleted = client.delete(batch.id)
    assert deleted.id == batch.id
    with pytest.raises(NotFoundError):
        client.retrieve(batch.id)


def test_create_from_a_streamed_body(emulator: RunningEmulator, client: Client) -> None:
    lines = [json.dumps(r).encode() for r in requests(50)]
    batch = client.create_from_body(lambda: iter_create_body(lines))
    assert batch.request_counts.processing == 50
    assert emulator.admin.requests_received() == 50
    received = emulator.admin.requests(batch.id)
    assert received == requests(50)


def test_cancel_and_delete_rules(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(3))
    with pytest.raises(BadRequestError, match="cannot be deleted"):
        client.delete(batch.id)
    canceling = client.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 3
    ended = emulator.wait_ended(batch.id)
    assert ended["canceled"] == 3
    assert client.retrieve(batch.id).request_counts.canceled == 3
    assert {r.result.type for r in client.results(batch.id)} == {"canceled"}
    with pytest.raises(BadRequestError, match="already ended"):
        client.cancel(batch.id)
    client.delete(batch.id)


def test_size_limit_is_a_413(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    small = emulator_factory(max_body_bytes=2000)
    with Client(api_key=small.api_key, base_url=small.base_url, max_retries=0) as client:
        with pytest.raises(RequestTooLargeError) as info:
            client.create(requests(40))
        assert info.value.status_code == 413
        assert info.value.error_type == "request_too_large"
        assert small.admin.batches_created() == 0
        client.create(requests(2))
        assert small.admin.batches_created() == 1


async def test_every_operation_async(emulator: RunningEmulator) -> None:
    async with AsyncClient(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        batch = await client.create([request("a"), request("b", model="unknown-model")])
        for _ in range(500):
            batch = await client.retrieve(batch.id)
            if batch.is_ended:
                break
            await _pause()
        assert batch.request_counts.succeeded == 1
        assert batch.request_counts.errored == 1
        results = {r.custom_id: r.result async for r in client.results(batch)}
        assert results["a"].type == "succeeded"
        assert results["b"].type == "errored"
        assert [b.id async for b in client.list(limit=1)] == [batch.id]
        page = await client.list_page(limit=5)
        assert [b.id for b in page.data] == [batch.id]
        with pytest.raises(BadRequestError):
            await client.cancel(batch.id)
        assert (await client.delete(batch.id)).id == batch.id


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.02)
